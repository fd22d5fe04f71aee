"""The optimiser every task trains with: AdamW, with torch's fused kernel where Lightning allows it."""

from __future__ import annotations

import lightning.pytorch as pl
import torch


def adamw(module: pl.LightningModule, params, **options) -> torch.optim.AdamW:
    """AdamW over `params` (tensors or parameter groups) for `module`'s run.

    The fused kernel updates each weight in one pass where the default (foreach) makes several
    over the weights, gradients and both moments: for the AOC encoder's 54M trained weights
    (its own embedding included) 0.07 instead of 0.24 s a step on 2 CPU cores, 13% of the
    whole step (docs/BENCHMARKS.md). Lightning's mixed-precision plugins (16-mixed, bf16-mixed)
    refuse gradient clipping with an optimiser that unscales its own gradients, which the fused
    one claims to do, so under them the step stays foreach. A module outside a Trainer (a bare
    loop, a benchmark) gets the fused kernel."""
    trainer = module._trainer  # the public `trainer` property raises outside a Trainer
    mixed = trainer is not None and "mixed" in str(trainer.precision)
    return torch.optim.AdamW(params, fused=not mixed, **options)
