"""Cramming: k input vectors optimised per text until a frozen causal LM regenerates it
("Cramming 1568 Tokens into a Single Vector and Back Again"), and how much text a vector holds.

Config `config.py`, texts `texts.py`, the batched optimiser `optimise.py` (per-row stopping,
full and progressive modes), scores `measure.py`, the vectors file and `cram-decode`
`vectors.py`, the command `run.py`, the capacity sweep `capacity.py`, verbs `commands.py`.
Not trained by a Lightning Trainer: the task owns its verbs.
"""

from __future__ import annotations

from ...task import Task, register_task
from .capacity import CAPACITY
from .commands import add_commands
from .config import TASK, CramExperimentConfig

register_task(Task(
    name=TASK, schema=CramExperimentConfig,
    description="cramming: per-text input vectors a frozen LM regenerates the text from (capacity in tokens/vector)",
    sweep=CAPACITY, add_commands=add_commands, verbs=("cram", "cram-decode"),
))
