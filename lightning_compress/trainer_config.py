"""Checks of an experiment's `trainer:` block (keyword arguments of lightning.Trainer): its
keys against the Trainer's own signature, its values before any model loads, and whether the
accelerator it names exists on this machine."""

from __future__ import annotations

import inspect
from typing import Any

from .config import ConfigError, closest_key


def check_trainer_keys(trainer: Any) -> None:
    if not isinstance(trainer, dict):
        raise ConfigError("`trainer` must be a mapping of lightning.Trainer arguments")
    from lightning.pytorch import Trainer

    valid = set(inspect.signature(Trainer.__init__).parameters) - {"self", "callbacks", "logger", "plugins", "default_root_dir"}
    for key in trainer:
        if key == "accumulate_grad_batches":
            raise ConfigError(
                "trainer.accumulate_grad_batches is derived: set the global data.batch_size and the per-device "
                "data.micro_batch_size, and accumulation follows from the world size"
            )
        if key not in valid:
            guess = closest_key(str(key), sorted(valid))
            hint = f"did you mean `trainer.{guess}`? " if guess else ""
            raise ConfigError(f"unknown config key `trainer.{key}`; {hint}lightning.Trainer accepts: {', '.join(sorted(valid))}")


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_trainer_values(trainer) -> None:
    """Values of the Trainer arguments that would otherwise fail mid-run (val_check_interval=0
    divides by zero at the first validation) or after the model has loaded."""
    get = trainer.get
    devices = get("devices", "auto")
    if not (devices == "auto" or (_is_int(devices) and (devices >= 1 or devices == -1))
            or (isinstance(devices, str) and devices.replace(",", "").replace(" ", "").lstrip("-").isdigit())
            or (hasattr(devices, "__iter__") and not isinstance(devices, str) and all(_is_int(d) and d >= 0 for d in devices))):
        raise ConfigError(f"trainer.devices={devices!r}; expected auto, a count >= 1, -1 (all) or a list of device indices")
    accelerator = get("accelerator", "auto")
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"trainer.accelerator={accelerator!r}; expected one of {', '.join(ACCELERATORS)}")
    interval = get("val_check_interval", None)
    if interval is not None and not ((_is_int(interval) and interval >= 1) or (isinstance(interval, float) and 0 < interval <= 1)):
        raise ConfigError(f"trainer.val_check_interval={interval!r}; expected steps (an integer >= 1) or a fraction "
                          "of an epoch in (0, 1]")
    max_steps = get("max_steps", -1)
    if not (_is_int(max_steps) and (max_steps >= 1 or max_steps == -1)):
        raise ConfigError(f"trainer.max_steps={max_steps!r}; expected an integer >= 1 (or -1: no limit)")
    for key in ("log_every_n_steps", "accumulate_grad_batches", "check_val_every_n_epoch", "num_nodes"):
        value = get(key, 1)
        if value is not None and not (_is_int(value) and value >= 1):
            raise ConfigError(f"trainer.{key}={value!r}; expected an integer >= 1")
    precision = get("precision", None)
    valid = ("64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
             "transformer-engine", "transformer-engine-float16")
    if precision is not None and str(precision) not in valid:
        raise ConfigError(f"trainer.precision={precision!r}; expected one of {', '.join(valid)}")


def check_accelerator_here(trainer) -> None:
    """A GPU run on a machine without one fails before anything loads (a file may name a
    GPU and still be valid: check-config accepts it anywhere, `train` checks it here)."""
    accelerator = trainer.get("accelerator", "auto")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no CUDA GPU "
                              "(torch.cuda.is_available() is False); use trainer.accelerator=auto or cpu")
