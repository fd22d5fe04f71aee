"""Prompt compression into memory-token KV for a frozen decoder (500xCompressor, AOC).

Config `config.py`, model `module.py` (PromptCompressor) with `encoders/` and `memory.py`
(MemoryKV), regeneration `generation.py`, TensorBoard `callbacks.py`, held-out scoring
`evaluate.py`, the fit/eval hooks `train.py`, and the encoder x (n, m) grid `ablation.py`.
Heavy modules are imported when a command runs, not when the task registers.
"""

from __future__ import annotations

from ...task import Task, lazy, register_task
from .ablation import ABLATION
from .commands import add_commands
from .config import TASK, PromptExperimentConfig


register_task(Task(
    name=TASK, schema=PromptExperimentConfig, default=True,
    description="prompt compression into memory KV for a frozen decoder (500xCompressor, AOC)",
    build=lazy(f"{__name__}.train", "build"), preflight=lazy(f"{__name__}.train", "preflight"),
    finish=lazy(f"{__name__}.train", "finish"), evaluate=lazy(f"{__name__}.train", "evaluate_checkpoint"), sweep=ABLATION,
    add_commands=add_commands, verbs=("ablation",),
))
