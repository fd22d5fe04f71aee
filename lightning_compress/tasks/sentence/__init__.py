"""Tiny-transformer sentence autoencoders ("Tiny Transformers Excel at Sentence Compression"):
an encoder of 1-3 layers pools a sentence into ONE vector, a decoder of as many layers
regenerates it from that vector alone.

Config `config.py`, tokenizer `tokenizer.py`, the network `model.py`, storage precision
`precision.py`, the LightningModule `module.py`, final evaluation `evaluate.py`, reference
parameter counts `params.py`, fit/eval hooks `train.py`, the layers x width x precision sweep
`grid.py`. Data: `data_modules/sentences.py`.
"""

from __future__ import annotations

from ...task import Task, lazy, register_task
from .config import TASK, SentenceExperimentConfig
from .grid import GRID

register_task(Task(
    name=TASK, schema=SentenceExperimentConfig,
    description="sentence autoencoders: a 1-3 layer transformer encodes a sentence into one vector and decodes it back",
    build=lazy(f"{__name__}.train", "build"), preflight=lazy(f"{__name__}.train", "preflight"),
    finish=lazy(f"{__name__}.train", "finish"), evaluate=lazy(f"{__name__}.train", "evaluate_checkpoint"),
    sweep=GRID,
))
