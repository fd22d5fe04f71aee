"""The LightningModule of a sentence autoencoder: teacher-forced training, and validation that
regenerates each sentence from its stored vector (at the configured precision) by greedy
decoding, the way the result would be used."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from ...checkpoint_io import stamp_checkpoint
from ...distributed import gather_objects
from ...metrics import sentence_bleu4
from ...optimizers import adamw
from ...reports import headed_cell, markdown_table
from .config import TASK
from .model import SentenceAutoencoder
from .precision import round_trip
from .tokenizer import SeenVocabulary, sentence_tokenizer


def compare(references: list[list[int]], outputs: list[list[int]]) -> tuple[int, int, int]:
    """(reference tokens right at their position, reference tokens, sentences exact); EOS counts
    as a token of each reference, so stopping early or late costs one."""
    right = total = exact = 0
    for reference, output in zip(references, outputs):
        ref, out = reference + [-1], output + [-1]  # -1 marks the end (EOS) on both sides
        right += sum(a == b for a, b in zip(ref, out))
        total += len(ref)
        exact += ref == out
    return right, total, exact


class SentenceAutoencoderModule(pl.LightningModule):
    def __init__(self, config: dict, vocab: int, kept_tokens: list[int] | None = None):
        """`vocab`: the ids the model reads and writes (with a seen vocabulary: its tokens + UNK).
        `kept_tokens`: the tokenizer ids of a seen vocabulary; a checkpoint's state restores them."""
        super().__init__()
        self.save_hyperparameters(ignore=["kept_tokens"])  # 20k ids belong in the state, not in hparams.yaml
        m, d = config["model"], config["data"]
        # Checkpoints written before these keys existed decode as they were trained.
        self.seen_vocabulary = m.get("vocabulary", "tokenizer") == "seen"
        self.net = SentenceAutoencoder(vocab, m["width"], m["layers"], m["heads"], m["ffn_mult"], m["dropout"],
                                       d["max_tokens"], m["pooling"], m["tie_embeddings"], m.get("conditioning", "first"),
                                       unk=vocab - 1 if self.seen_vocabulary else None)
        if self.seen_vocabulary:
            kept = torch.tensor(kept_tokens if kept_tokens is not None else [0] * (vocab - 1), dtype=torch.long)
            self.net.register_buffer("kept_tokens", kept)
        self.samples: list[tuple[str, str]] = []

    @property
    def settings(self) -> dict:
        return self.hparams.config["model"]

    @property
    def tokenizer(self):
        """The tokenizer, narrowed to the model's seen vocabulary where it has one."""
        tokenizer = sentence_tokenizer(self.hparams.config["data"]["tokenizer"])
        return SeenVocabulary(tokenizer, self.net.kept_tokens.tolist()) if self.seen_vocabulary else tokenizer

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def _loss(self, batch):
        m = self.settings
        logits, targets = self.net(batch["ids"], batch["lengths"], m["precision"], m["quantization_aware"])
        # No boolean-mask copies of the [B, T, vocab] logits: PAD targets are ignored in place.
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=self.net.pad)
        keep = targets != self.net.pad
        accuracy = ((logits.detach().argmax(-1) == targets) & keep).sum() / keep.sum()
        return loss, accuracy

    def training_step(self, batch, batch_idx):
        loss, accuracy = self._loss(batch)
        size = len(batch["ids"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/teacher_forced_accuracy", accuracy, batch_size=size)
        return loss

    def regenerate(self, batch, precision: str) -> list[list[int]]:
        vectors = round_trip(self.net.encode(batch["ids"], batch["lengths"]), precision)
        return self.net.generate(vectors)

    def on_validation_epoch_start(self):
        self._counts = torch.zeros(4, dtype=torch.float64, device=self.device)  # right, tokens, exact, sentences
        self.samples = []
        self._outputs: list[tuple] = []

    def validation_step(self, batch, batch_idx):
        loss, accuracy = self._loss(batch)
        size = len(batch["ids"])
        self.log("val/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("val/teacher_forced_accuracy", accuracy, batch_size=size, sync_dist=True)
        references = [row[:n] for row, n in zip(batch["ids"].tolist(), batch["lengths"].tolist())]
        outputs = self.regenerate(batch, self.settings["precision"])
        self._counts += torch.tensor([*compare(references, outputs), len(references)], dtype=torch.float64,
                                     device=self.device)
        self._outputs += [tuple(out) for out in outputs]
        room = max(0, self.hparams.config["eval"]["num_samples"] - len(self.samples))
        if room:
            tokenizer = self.tokenizer  # built from the kept ids at each access: once per batch, not per sample
            self.samples += [(text, tokenizer.decode(out)) for text, out in zip(batch["text"][:room], outputs[:room])]

    def on_validation_epoch_end(self):
        # Exact ratios over all ranks' sentences: the counts are summed, then divided.
        counts = self.trainer.strategy.reduce(self._counts, reduce_op="sum") if self.trainer.world_size > 1 else self._counts
        right, total, exact, sentences = counts.tolist()
        self.log("val/token_accuracy", right / max(total, 1), prog_bar=True)
        self.log("val/exact_match", exact / max(sentences, 1))
        self.log("val/token_error", 1 - right / max(total, 1))  # picks the best checkpoint (lower is better)
        # Distinct regenerations over all ranks: a decoder that collapses to a few sentences shows here.
        outputs = [out for rank in gather_objects(self._outputs) for out in rank]
        self.log("val/distinct_outputs", len(set(outputs)) / max(len(outputs), 1), sync_dist=True)  # equal on every rank
        logger = self.logger.experiment if self.logger is not None else None
        if logger is not None and self.global_rank == 0 and self.samples:
            rows = [[ref, headed_cell(f"BLEU {sentence_bleu4(ref, out):.2f} · exact {'yes' if ref == out else 'no'}", out)]
                    for ref, out in self.samples]
            logger.add_text("regeneration/samples", markdown_table(["sentence", "regenerated"], rows), self.global_step)

    def configure_optimizers(self):
        m = self.settings
        decay = [p for n, p in self.net.named_parameters() if p.dim() >= 2]
        other = [p for n, p in self.net.named_parameters() if p.dim() < 2]
        optimizer = adamw(self, [{"params": decay, "weight_decay": m["weight_decay"]},
                                 {"params": other, "weight_decay": 0.0}], lr=m["lr"], betas=(0.9, 0.95))
        total = max(1, int(self.trainer.max_steps or 1))
        warmup = min(m["warmup_steps"], total // 2)

        def schedule(step: int) -> float:  # linear warm-up, cosine to 10%
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stamp_checkpoint(checkpoint, TASK, self.hparams.config)
