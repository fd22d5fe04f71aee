"""The task registry: each research system is a package under `lightning_compress/tasks/`
that describes itself with one `Task` record and registers it at the bottom of its
`__init__.py` (the pattern of fairseq's `register_task` and peft's `register_peft_method`).

The shared core knows no task by name: it asks this registry. `lightning_compress.tasks` is
imported on the first look-up, so importing the core never imports a task.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Task:
    # The value of `task:` in an experiment file and in a checkpoint's stamp.
    name: str
    # Dataclass of the experiment file (a subclass of config.ExperimentBase); it may define a
    # static `check(cfg)` for value checks after the keys are merged.
    schema: type
    # One line for `lcompress --help` and `make help`.
    description: str = ""
    # A file without `task:` means this task (the original one); at most one task says so.
    default: bool = False
    # `lcompress train`: build(cfg, trainer_kwargs) -> runner.Build; None if the task is not
    # trained by a Lightning Trainer (it then owns its verbs).
    build: Callable | None = None
    # Checks that must fail before anything loads (a missing data path): preflight(cfg).
    preflight: Callable | None = None
    # Rank 0, after fit: finish(cfg, build, trainer, best_checkpoint, run_dir) -> {"metrics": ...}.
    finish: Callable | None = None
    # `lcompress eval CKPT`: evaluate(checkpoint: checkpoint_io.Checkpoint, overrides, out) -> exit code;
    # `out` is the results folder (--out, or a new one the core picked); the core adds the
    # checkpoint and its step to out/metrics.json afterwards.
    evaluate: Callable | None = None
    # Grid runs of this task (`lcompress sweep`): a sweep.SweepSpec.
    sweep: Any = None
    # add_commands(subparsers) adds the task's own verbs; each sets `run=` on its parser.
    add_commands: Callable[[argparse._SubParsersAction], None] | None = None
    # The task's own verbs, for the duplicate check and `lcompress --help`.
    verbs: tuple = field(default_factory=tuple)


_TASKS: dict[str, Task] = {}
_loaded = False

# Verbs of the core CLI; a task may not take them.
CORE_VERBS = ("train", "eval", "check-config", "config", "sweep")


def register_task(task: Task) -> Task:
    """Add a task; a second task of the same name, a verb taken twice or two default tasks
    fail here, at import time."""
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    taken = {verb: other.name for other in _TASKS.values() for verb in other.verbs}
    for verb in task.verbs:
        if verb in CORE_VERBS or verb in taken:
            owner = "the core CLI" if verb in CORE_VERBS else f"task {taken[verb]!r}"
            raise ValueError(f"task {task.name!r}: verb {verb!r} is already taken by {owner}")
    if task.default and any(t.default for t in _TASKS.values()):
        raise ValueError(f"task {task.name!r}: another task is already the default")
    _TASKS[task.name] = task
    return task


def _load_tasks() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("lightning_compress.tasks")


def all_tasks() -> list[Task]:
    _load_tasks()
    return list(_TASKS.values())


def get_task(name: str) -> Task:
    _load_tasks()
    if not isinstance(name, str) or name not in _TASKS:
        from .config import ConfigError

        raise ConfigError(f"task={name!r}; registered tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def default_task() -> Task:
    found = [t for t in all_tasks() if t.default]
    if not found:
        from .config import ConfigError

        raise ConfigError("the file names no `task:` and no task is registered as the default")
    return found[0]


def lazy(module: str, attribute: str) -> Callable:
    """A function that imports `module` on its first call and calls `module.attribute`: a
    task registers its hooks without importing torch-heavy modules at registration time."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), attribute)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"{module}.{attribute}"
    return call
