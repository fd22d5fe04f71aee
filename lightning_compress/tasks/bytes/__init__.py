"""Byte-level transformers as lossless compressors of text, images and audio.

Config `config.py`, model `model.py` (ByteLM), arithmetic coding `coder.py` with the file
format `container.py` and the Python API `api.py`, classical codecs `baselines.py`, the
codec benchmark `bench.py`, the fit/eval hooks `train.py` and the CLI verbs `commands.py`.
"""

from __future__ import annotations

from ...task import Task, lazy, register_task
from .commands import add_commands
from .config import TASK, ByteExperimentConfig

register_task(Task(
    name=TASK, schema=ByteExperimentConfig,
    description="byte-level transformers as lossless compressors (arithmetic coding vs classical codecs)",
    build=lazy(f"{__name__}.train", "build"), preflight=lazy(f"{__name__}.train", "preflight"),
    finish=lazy(f"{__name__}.train", "finish"), evaluate=lazy(f"{__name__}.train", "evaluate_checkpoint"),
    add_commands=add_commands, verbs=("compress", "decompress", "bench-codecs"),
))
