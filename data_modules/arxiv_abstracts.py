"""ArxivAbstractsDataModule: prompts of exactly n tokens, streamed and sharded.

Splits are decided by a hash of the normalised text (sha1, not Python's salted `hash`), so
they are the same on every machine and run, and a text can never sit in two splits.
Texts with fewer than n tokens are skipped and counted, unless `pad_to_n` pads them with
`pad_id` up to n as 500xCompressor and AOC do (their pads are targets too).

Order: the training stream of each shard goes through a seeded shuffle buffer, reseeded per
(seed, shard, pass), so every pass has a new order and a resumed run sees the same one.

Sharding: an example goes to shard `index % (world_size * num_workers)` where index counts
the split's records in file order, and shard = rank * num_workers + worker id. Shards are
disjoint and together cover the split; each rank sees every example once per epoch. A hub
dataset is instead split by `datasets.distributed.split_dataset_by_node` over the same
readers (whole files per reader when its file shards divide evenly, else one record in N),
so no reader streams the whole dataset for a share of it.

Resume: the training loader is stateful. Its state is the number of batches the trainer has
consumed; a resumed loader makes each worker skip exactly the examples it had already
batched, so training continues the same order with nothing repeated or skipped.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .records import SkipLog, is_hub_source, iter_texts, repeated_passes, shuffled

log = logging.getLogger(__name__)

# "all" reads every record of the source (e.g. a file given to `lcompress eval`).
SPLITS = ("train", "val", "test", "all")


def split_of(text: str, val_per_mille: int, test_per_mille: int) -> str:
    bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) % 1000
    if bucket < val_per_mille:
        return "val"
    if bucket < val_per_mille + test_per_mille:
        return "test"
    return "train"


class AbstractsStream(IterableDataset):
    """Yields {"input_ids": LongTensor[n], "text": str} for one split and one DDP rank.

    With `repeat`, passes over the split follow each other without end (training).
    With `limit`, only the first `limit` usable texts of the split are used (the same set at
    every world size: all ranks tokenise candidates in order, then take their share)."""

    def __init__(
        self,
        source,
        split,
        tokenizer,
        n_tokens,
        text_field="abstract",
        val_per_mille=50,
        test_per_mille=50,
        limit=None,
        rank=0,
        world_size=1,
        hub_split="train",
        repeat=False,
        pad_to_n=False,
        pad_id=None,
        shuffle_buffer=0,
        seed=0,
    ):
        if pad_to_n and pad_id is None:
            raise ValueError("pad_to_n needs a pad_id")
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; expected one of {SPLITS}")
        self.source, self.split, self.tokenizer, self.n_tokens = source, split, tokenizer, n_tokens
        self.text_field, self.val_per_mille, self.test_per_mille = text_field, val_per_mille, test_per_mille
        self.limit, self.rank, self.world_size, self.hub_split = limit, rank, world_size, hub_split
        self.repeat, self.pad_to_n, self.pad_id = repeat, pad_to_n, pad_id
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.skips = SkipLog()
        # Examples this shard already delivered before a resume (set by ResumableLoader).
        self.resume_skip = 0

    def _worker_role(self) -> tuple[int, int]:
        """(workers, the worker slot this process plays). The DataLoader takes batch i from
        worker i % workers; after a resume at batch k the new worker 0 must play the slot
        that produced batch k, so slots rotate by k."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        batches = self.resume_skip[0] if self.resume_skip else 0
        return workers, (worker + batches) % workers

    def _shard(self) -> tuple[int, int]:
        workers, role = self._worker_role()
        return self.rank * workers + role, self.world_size * workers

    def _split_texts(self, shard: tuple[int, int] | None = None):
        for text in iter_texts(self.source, self.text_field, self.skips, self.hub_split, shard):
            if self.split == "all" or split_of(text, self.val_per_mille, self.test_per_mille) == self.split:
                yield text

    def _ids(self, text: str):
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            self.skips.skip("no tokens", f"{self.split} split")
            return None
        if len(ids) < self.n_tokens and self.pad_to_n:
            return ids + [self.pad_id] * (self.n_tokens - len(ids))
        if len(ids) < self.n_tokens:
            self.skips.skip(f"shorter than n_tokens={self.n_tokens}", f"{self.split} split")
            return None
        return ids[: self.n_tokens]

    def __iter__(self):
        return itertools.islice(self._examples(), self._skip_for_this_worker(), None)

    def _skip_for_this_worker(self) -> int:
        """Examples this worker's slot had batched before the resume point (resume_skip is
        (batches consumed, batch size)): slot r produced batches r, r + workers, ... < k."""
        if not self.resume_skip:
            return 0
        batches, batch_size = self.resume_skip
        workers, role = self._worker_role()
        own_batches = (batches - role + workers - 1) // workers if batches > role else 0
        return own_batches * batch_size

    def _examples(self):
        if not self.repeat:
            return self._one_pass()
        return repeated_passes(self._one_pass, lambda: (
            f"the {self.split} split of data.source={self.source!r} gives this shard no text with at "
            f"least {self.n_tokens} tokens; {self.skips.summary()}"))

    def _one_pass(self, pass_index: int = 0):
        shard, shards = self._shard()
        self.skips = SkipLog()
        produced = 0
        if self.limit is None:
            # Shard first, tokenise only this shard's texts. A hub dataset is split by
            # `datasets` itself (whole files per reader where they divide evenly).
            if is_hub_source(self.source):
                candidates = self._split_texts((shard, shards))
            else:
                candidates = (t for i, t in enumerate(self._split_texts()) if i % shards == shard)
            if self.shuffle_buffer > 1:
                candidates = shuffled(candidates, self.shuffle_buffer, random.Random(f"{self.seed}:{shard}:{pass_index}"))
            for text in candidates:
                ids = self._ids(text)
                if ids is not None:
                    produced += 1
                    yield {"input_ids": torch.tensor(ids, dtype=torch.long), "text": text}
        else:
            usable = 0
            for text in self._split_texts():
                if usable >= self.limit:
                    break
                ids = self._ids(text)
                if ids is None:
                    continue
                if usable % shards == shard:
                    produced += 1
                    yield {"input_ids": torch.tensor(ids, dtype=torch.long), "text": text}
                usable += 1
        if shard == 0 and self.skips.total:
            log.warning("%s split (shard 0 of %d): %d examples; %s", self.split, shards, produced, self.skips.summary())


class ResumableLoader(DataLoader):
    """The training DataLoader with Lightning's `state_dict`/`load_state_dict` protocol.

    `consumed` returns how many batches the trainer has taken (Lightning's own count, which
    excludes the batch its fetcher pre-fetched); the layout (world size, workers, batch size)
    must match on resume, since it decides which example each rank and worker holds."""

    def __init__(self, dataset, consumed, **kwargs):
        super().__init__(dataset, **kwargs)
        self._consumed = consumed
        self._resume_batches = 0

    def _layout(self) -> dict:
        return {"world_size": self.dataset.world_size, "num_workers": self.num_workers, "batch_size": self.batch_size}

    def state_dict(self) -> dict:
        return {"batches": int(self._consumed()), **self._layout()}

    def load_state_dict(self, state: dict) -> None:
        saved = {k: state.get(k) for k in self._layout()}
        if saved != self._layout():
            raise ValueError(
                f"cannot continue the checkpoint's data order: it was written with {saved}, this run has "
                f"{self._layout()}; resume with the same world size, data.num_workers and micro-batch size"
            )
        self._resume_batches = int(state["batches"])

    def __iter__(self):
        self.dataset.resume_skip = (self._resume_batches, self.batch_size) if self._resume_batches else 0
        self._resume_batches = 0  # only the first pass after a resume skips
        return super().__iter__()


def collate(batch: list[dict]) -> dict:
    return {"input_ids": torch.stack([b["input_ids"] for b in batch]), "text": [b["text"] for b in batch]}


class ArxivAbstractsDataModule(pl.LightningDataModule):
    def __init__(
        self,
        tokenizer,
        source="sample",
        n_tokens=32,
        text_field="abstract",
        batch_size=8,
        val_size=32,
        eval_size=64,
        eval_batch_size=16,
        val_per_mille=50,
        test_per_mille=50,
        num_workers=0,
        hub_split="train",
        pad_to_n=False,
        pad_id=None,
        shuffle_buffer=0,
        seed=0,
        val_source="",
        test_source="",
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.source, self.n_tokens, self.text_field = source, n_tokens, text_field
        self.batch_size, self.val_size, self.eval_size, self.eval_batch_size = batch_size, val_size, eval_size, eval_batch_size
        self.val_per_mille, self.test_per_mille = val_per_mille, test_per_mille
        self.num_workers, self.hub_split = num_workers, hub_split
        self.pad_to_n, self.pad_id, self.shuffle_buffer, self.seed = pad_to_n, pad_id, shuffle_buffer, seed
        # A split read from its own file (every record of it) instead of by hash from `source`.
        self.split_sources = {"val": val_source, "test": test_source}
        self._val_examples = None

    @classmethod
    def from_config(cls, data_cfg, eval_cfg, tokenizer, pad_id=None, seed=0) -> "ArxivAbstractsDataModule":
        return cls(
            tokenizer,
            source=data_cfg.source,
            n_tokens=data_cfg.n_tokens,
            text_field=data_cfg.text_field,
            batch_size=data_cfg.batch_size,
            val_size=data_cfg.val_size,
            eval_size=eval_cfg.num_samples,
            eval_batch_size=eval_cfg.batch_size,
            val_per_mille=data_cfg.val_per_mille,
            test_per_mille=data_cfg.test_per_mille,
            num_workers=data_cfg.num_workers,
            hub_split=data_cfg.hub_split,
            pad_to_n=data_cfg.pad_to_n,
            pad_id=pad_id,
            shuffle_buffer=data_cfg.shuffle_buffer,
            seed=seed,
            val_source=data_cfg.val_source,
            test_source=data_cfg.test_source,
        )

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def dataset(self, split: str, limit=None, rank=None, world_size=None, repeat=False):
        default_rank, default_world = self._rank_world()
        own = self.split_sources.get(split)
        source, split = (own, "all") if own else (self.source, split)
        return AbstractsStream(
            source,
            split,
            self.tokenizer,
            self.n_tokens,
            self.text_field,
            self.val_per_mille,
            self.test_per_mille,
            limit=limit,
            rank=default_rank if rank is None else rank,
            world_size=default_world if world_size is None else world_size,
            hub_split=self.hub_split,
            repeat=repeat,
            pad_to_n=self.pad_to_n,
            pad_id=self.pad_id,
            shuffle_buffer=self.shuffle_buffer if repeat else 0,
            seed=self.seed,
        )

    def _loader(self, dataset, batch_size: int) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, collate_fn=collate, num_workers=self.num_workers)

    def _consumed_batches(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.total.processed

    def train_dataloader(self):
        dataset = self.dataset("train", repeat=True)
        return ResumableLoader(
            dataset, self._consumed_batches, batch_size=self.batch_size, collate_fn=collate, num_workers=self.num_workers
        )

    def val_dataloader(self):
        # This rank's validation prompts, read once and kept as a list: the same prompts at
        # every validation, and a loader with a length (the progress bar shows a total).
        if self._val_examples is None:
            self._val_examples = list(self.dataset("val", limit=self.val_size))
        return self._loader(self._val_examples, self.batch_size)

    def test_dataloader(self):
        return self._loader(self.dataset("test", limit=self.eval_size), self.eval_batch_size)

    def first_examples(self, split: str, count: int) -> list[dict]:
        """The first `count` usable examples of a split (fixed prompts for callbacks)."""
        return list(self.dataset(split, limit=count, rank=0, world_size=1))


def probe_supply(source, tokenizer, n_tokens, text_field="abstract", val_per_mille=50, test_per_mille=50,
                 hub_split="train", max_records=20000) -> dict:
    """Count texts of at least `n_tokens` tokens per split, reading at most `max_records`
    records, so a grid can refuse an n the data cannot supply before anything trains.
    Returns {"train": k, "val": k, "test": k, "records": read, "complete": whole source read}."""
    counts = {"train": 0, "val": 0, "test": 0}
    skips = SkipLog()
    read = 0
    complete = True
    for text in iter_texts(source, text_field, skips, hub_split):
        if read >= max_records:
            complete = False
            break
        read += 1
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= n_tokens:
            counts[split_of(text, val_per_mille, test_per_mille)] += 1
    return {**counts, "records": read, "complete": complete}
