"""Sentences for sentence autoencoders: split from any text source, length-limited in tokens,
deduplicated, split into train / val / test by a hash of each sentence, sharded by rank and
DataLoader worker.

Every shard walks the same deterministic sequence of usable sentences (source order, sentence
split, first occurrence of each distinct sentence, its split, its length in limits) and keeps
those whose position is its own modulo the number of shards, so the shards are disjoint and
cover the split whatever the world size. Training repeats the split with a seeded shuffle
buffer per shard and pass. Sentences outside the length limits, duplicates and bad records
(see records.py) are counted, never a crash.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from functools import lru_cache, partial

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .arxiv_abstracts import split_of
from .records import SkipLog, iter_texts, repeated_passes, shuffled

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _splitter():
    # Punkt without trained parameters: the trained model is a separate download.
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer()


def split_sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in _splitter().tokenize(text) if s.strip()]


class SentenceStream(IterableDataset):
    """Yields {"ids": LongTensor[t], "text": str} of one split for one shard."""

    def __init__(self, source, split, encode, min_tokens=4, max_tokens=32, text_field="abstract", val_per_mille=50,
                 test_per_mille=50, limit=None, rank=0, world_size=1, hub_split="train", repeat=False,
                 shuffle_buffer=0, seed=0):
        self.source, self.split, self.encode = source, split, encode
        self.min_tokens, self.max_tokens, self.text_field = min_tokens, max_tokens, text_field
        self.val_per_mille, self.test_per_mille, self.limit = val_per_mille, test_per_mille, limit
        self.rank, self.world_size, self.hub_split, self.repeat = rank, world_size, hub_split, repeat
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.skips = SkipLog()
        self.counts = Counter()  # why sentences were passed over, in the last pass

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def usable(self):
        """(sentence, ids) of the split, in the same order for every shard."""
        self.skips, self.counts, seen = SkipLog(), Counter(), set()
        produced = 0
        for text in iter_texts(self.source, self.text_field, self.skips, self.hub_split):
            for sentence in split_sentences(text):
                digest = hashlib.sha1(sentence.encode("utf-8")).digest()[:12]
                if digest in seen:
                    self.counts["duplicate"] += 1
                    continue
                seen.add(digest)
                if split_of(sentence, self.val_per_mille, self.test_per_mille) != self.split and self.split != "all":
                    continue
                ids = self.encode(sentence)
                if len(ids) < self.min_tokens:
                    self.counts[f"under min_tokens={self.min_tokens}"] += 1
                    continue
                if len(ids) > self.max_tokens:
                    self.counts[f"over max_tokens={self.max_tokens}"] += 1
                    continue
                yield sentence, ids
                produced += 1
                if self.limit is not None and produced >= self.limit:
                    return

    def report(self) -> str:
        passed = ", ".join(f"{n} {why}" for why, n in self.counts.most_common()) or "none"
        return f"sentences passed over: {passed}; {self.skips.summary()}"

    def _one_pass(self, pass_index: int):
        shard, shards = self._shard()
        mine = (item for i, item in enumerate(self.usable()) if i % shards == shard)
        if self.shuffle_buffer > 1:
            mine = shuffled(mine, self.shuffle_buffer, random.Random(f"{self.seed}:{shard}:{pass_index}"))
        for sentence, ids in mine:
            yield {"ids": torch.tensor(ids, dtype=torch.long), "text": sentence}
        if shard == 0 and (self.counts or self.skips.total):
            log.info("%s split: %s", self.split, self.report())

    def __iter__(self):
        if not self.repeat:
            return self._one_pass(0)
        return repeated_passes(self._one_pass, lambda: (
            f"the {self.split} split of data.source={self.source!r} gives this shard no sentence "
            f"of {self.min_tokens}..{self.max_tokens} tokens; {self.report()}"))


def pad_batch(batch: list[dict], pad_id: int) -> dict:
    lengths = torch.tensor([len(b["ids"]) for b in batch])
    ids = torch.full((len(batch), int(lengths.max())), pad_id, dtype=torch.long)
    for row, example in enumerate(batch):
        ids[row, : len(example["ids"])] = example["ids"]
    return {"ids": ids, "lengths": lengths, "text": [b["text"] for b in batch]}


class SentenceDataModule(pl.LightningDataModule):
    """Train (repeating, shuffled), val and test sentence loaders. `encode(text) -> ids` is the
    tokenizer; `pad_id` pads batches."""

    def __init__(self, source: str, encode, pad_id: int, min_tokens: int = 4, max_tokens: int = 32,
                 text_field: str = "abstract", val_per_mille: int = 50, test_per_mille: int = 50,
                 hub_split: str = "train", batch_size: int = 64, val_size: int = 256, test_size: int = 512,
                 shuffle_buffer: int = 2048, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.source, self.encode, self.pad_id = source, encode, pad_id
        self.options = dict(min_tokens=min_tokens, max_tokens=max_tokens, text_field=text_field,
                            val_per_mille=val_per_mille, test_per_mille=test_per_mille, hub_split=hub_split)
        self.batch_size, self.val_size, self.test_size = batch_size, val_size, test_size
        self.shuffle_buffer, self.num_workers, self.seed = shuffle_buffer, num_workers, seed
        self._held_out: dict = {}

    def stream(self, split: str, limit=None, repeat=False) -> SentenceStream:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return SentenceStream(self.source, split, self.encode, limit=limit, rank=rank, world_size=world,
                              repeat=repeat, shuffle_buffer=self.shuffle_buffer if repeat else 0, seed=self.seed,
                              **self.options)

    def loader(self, examples, workers: int = 0) -> DataLoader:
        return DataLoader(examples, batch_size=self.batch_size, num_workers=workers,
                          collate_fn=partial(pad_batch, pad_id=self.pad_id))

    def held_out(self, split: str, limit=None) -> list[dict]:
        """This rank's share of a held-out split, read and tokenised once, not at every validation."""
        key = (split, limit)
        if key not in self._held_out:
            self._held_out[key] = list(self.stream(split, limit=limit))
        return self._held_out[key]

    def train_dataloader(self):
        return self.loader(self.stream("train", repeat=True), self.num_workers)

    def val_dataloader(self):
        return self.loader(self.held_out("val", self.val_size))

    def test_dataloader(self):
        return self.loader(self.held_out("test", self.test_size))
