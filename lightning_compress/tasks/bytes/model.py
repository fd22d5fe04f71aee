"""ByteLM: a decoder-only transformer over the 256 byte values, trained with next-byte
cross-entropy; its predictions drive the arithmetic coder in `coder.py`.

The network is a transformers Llama (RoPE, SDPA attention, KV cache) with a 257-entry
vocabulary: ids 0..255 are bytes, 256 is BOS, which starts every chunk. Cross-entropy is
reported in bits per byte, the unit of compression: a model at b bits/byte codes a chunk
to about b/8 of its size, before the coder's overhead (measured by `lcompress bench-codecs`).
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from torch.nn import functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from ...checkpoint_io import stamp_checkpoint
from ...optimizers import adamw
from .config import SIZES, TASK

BOS = 256
VOCAB = 257


def llama_config(size: str, context: int, kv_heads: int = 0) -> LlamaConfig:
    """`kv_heads` (0: one per attention head): grouped-query attention, the cache of keys and
    values a coded byte reads shrinks by heads / kv_heads."""
    if size not in SIZES:
        raise ValueError(f"model.size={size!r}; expected one of {sorted(SIZES)}")
    hidden, layers, heads = SIZES[size]
    if kv_heads < 0 or (kv_heads and heads % kv_heads):
        raise ValueError(f"kv_heads={kv_heads}; expected 0 or a divisor of the {heads} heads of {size!r}")
    return LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads or heads, max_position_embeddings=context + 1,
        bos_token_id=BOS, eos_token_id=None, pad_token_id=None, tie_word_embeddings=True,
        attn_implementation="sdpa",
    )


class ByteLM(pl.LightningModule):
    def __init__(self, size: str = "small", context: int = 2048, lr: float = 1e-3, weight_decay: float = 0.01,
                 warmup_steps: int = 100, max_steps: int = 1000, config: dict | None = None, kv_heads: int = 0):
        """`config`: the run's experiment config, kept in the checkpoint so that
        `lcompress bench-codecs` finds the same data and held-out split. `kv_heads`: see
        `llama_config` (checkpoints from before it have none: one per head)."""
        super().__init__()
        self.save_hyperparameters()
        self.net = LlamaForCausalLM(llama_config(size, context, kv_heads))

    @property
    def context(self) -> int:
        return self.hparams.context

    def byte_logits(self, chunks: torch.Tensor) -> torch.Tensor:
        """[B, L] bytes -> [B, L, 256] logits of each byte given the ones before it."""
        bos = torch.full((chunks.shape[0], 1), BOS, dtype=torch.long, device=chunks.device)
        inputs = torch.cat([bos, chunks[:, :-1].long()], dim=1)
        return self.net(input_ids=inputs, use_cache=False).logits[..., :256]

    def bits_per_byte(self, chunks: torch.Tensor) -> torch.Tensor:
        logits = self.byte_logits(chunks)
        return F.cross_entropy(logits.flatten(0, 1).float(), chunks.flatten().long()) / math.log(2)

    def training_step(self, batch, batch_idx):
        bpb = self.bits_per_byte(batch["bytes"])
        self.log("train/bits_per_byte", bpb, prog_bar=True, batch_size=batch["bytes"].shape[0])
        return bpb * math.log(2)  # nats: the usual loss scale for the optimiser

    def on_validation_epoch_start(self):
        self._val_bits, self._val_bytes = {}, {}

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        chunks = batch["bytes"]
        bits = self.bits_per_byte(chunks).detach() * chunks.numel()
        name = batch["modality"][0]  # one held-out loader per modality
        self._val_bits[name] = self._val_bits.get(name, 0.0) + bits
        self._val_bytes[name] = self._val_bytes.get(name, 0) + chunks.numel()

    def on_validation_epoch_end(self):
        # Exact bits/byte per modality over all ranks' chunks (sums reduced, then divided),
        # and their plain mean, which picks the best checkpoint.
        datamodule = self.trainer.datamodule
        names = sorted(datamodule.files) if datamodule is not None else sorted(self._val_bits)
        means = []
        for name in names:
            pair = torch.tensor([float(self._val_bits.get(name, 0.0)), float(self._val_bytes.get(name, 0))], device=self.device)
            pair = self.trainer.strategy.reduce(pair, reduce_op="sum")
            if pair[1] > 0:
                means.append(pair[0] / pair[1])
                self.log(f"val/bits_per_byte/{name}", means[-1])  # already reduced: same on every rank
        if means:
            self.log("val/bits_per_byte", torch.stack(means).mean(), prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = adamw(self, self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=(0.9, 0.95))

        def schedule(step: int) -> float:
            # Linear warm-up, then cosine decay to 10% at max_steps.
            if step < hp.warmup_steps:
                return (step + 1) / hp.warmup_steps
            progress = min(1.0, (step - hp.warmup_steps) / max(1, hp.max_steps - hp.warmup_steps))
            return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stamp_checkpoint(checkpoint, TASK, self.hparams.get("config") or {})

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
