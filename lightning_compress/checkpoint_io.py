"""Checkpoints of every task: one stamp, one safe loader, atomic writes.

The stamp, under the key `lightning_compress` of a Lightning checkpoint, says what the file
is: format version, task, the run's config, the identity of a frozen backbone it needs (its
source and weight fingerprint) and a sha256 of the saved weights. Every task writes it the
same way (`stamp_checkpoint` from its module's `on_save_checkpoint`).

Every command reads a user's checkpoint through `load_checkpoint`: `torch.load` with
`weights_only=True`, so a crafted file cannot run code while it is read (only tensors,
plain containers and the project's own config dataclasses are allowed), then the checksum
is verified. A missing, empty, truncated, damaged or foreign file ends in one line that
names the file and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .atomic import atomic_torch_save, is_temporary

STAMP_KEY = "lightning_compress"
# 1: prompt checkpoints before the task registry (no task, no checksum); 2: the stamp below.
FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as it is."""


def weights_checksum(state_dict: dict) -> str:
    """sha256 over every tensor of a state dict (names, dtypes, shapes, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def stamp_checkpoint(checkpoint: dict, task: str, config: dict, backbone: dict | None = None) -> None:
    """Write the stamp into a Lightning checkpoint dict (after its `state_dict` is final).
    `backbone`: {"source": ..., "fingerprint": ...} of a frozen model the weights need."""
    checkpoint[STAMP_KEY] = {
        "format": FORMAT, "task": task, "config": config, "backbone": backbone,
        "weights_sha256": weights_checksum(checkpoint["state_dict"]),
    }


@dataclass
class Checkpoint:
    path: Path
    task: str
    config: dict
    # {"source", "fingerprint"} of the frozen model the weights were trained against, or None.
    backbone: dict | None
    state_dict: dict
    # The whole loaded dict (hyper_parameters, optimiser state, ...).
    raw: dict = field(repr=False)


def _allowed_types() -> list[type]:
    """The project's config dataclasses (every registered schema and the ones nested in it)."""
    from .task import all_tasks

    found, stack = [], [t.schema for t in all_tasks()]
    while stack:
        cls = stack.pop()
        if cls not in found:
            found.append(cls)
            stack += [type(f.default_factory()) for f in dataclasses.fields(cls)
                      if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())]
    return found


def safe_torch_load(path: str | Path, map_location="cpu") -> dict:
    """torch.load that cannot execute code, with one clear line for every way a file fails."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if is_temporary(path):
        raise CheckpointError(f"{path} is the temporary file of an interrupted or unfinished write, not a checkpoint; "
                              "use the file it was being written to (without the leading dot and .tmp-PID)")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy?")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        raise CheckpointError(f"{path} is not a checkpoint: not a PyTorch file (it starts with {magic!r})")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise CheckpointError(f"checkpoint {path} is truncated or damaged ({size:,} bytes, its zip directory is missing)") from None
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: a zip archive without data.pkl")
    try:
        with torch.serialization.safe_globals(_allowed_types()):
            loaded = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).split("Please file an issue")[0]
        unsafe = [line.strip() for line in detail.splitlines() if "GLOBAL" in line or "Unsupported" in line]
        raise CheckpointError(
            f"{path} refused: it holds Python objects that could run code when loaded "
            f"({unsafe[0] if unsafe else 'not plain tensors and containers'}); only checkpoints written by "
            "lightning_compress load"
        ) from None
    except Exception as err:  # zip records or tensor data that do not read back
        raise CheckpointError(f"checkpoint {path} is damaged: {str(err).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} is not a checkpoint: it holds a {type(loaded).__name__}, not a Lightning checkpoint dict")
    return loaded


def _legacy_stamp(raw: dict) -> dict | None:
    """Stamps of files written before format 2: prompt checkpoints (format 1, decoder
    identity, no task) and byte checkpoints (config in the hyper-parameters only)."""
    stamp = raw.get(STAMP_KEY)
    if isinstance(stamp, dict) and stamp.get("format") == 1:
        return {"format": 1, "task": stamp.get("config", {}).get("task", "prompt"), "config": stamp.get("config", {}),
                "backbone": {"source": stamp.get("decoder_source"), "fingerprint": stamp.get("decoder_fingerprint")}}
    config = (raw.get("hyper_parameters") or {}).get("config")
    if stamp is None and isinstance(config, dict) and config.get("task"):
        return {"format": 0, "task": config["task"], "config": config, "backbone": None}
    return None


def load_checkpoint(path: str | Path, task: str | None = None) -> Checkpoint:
    """Read and check a checkpoint of this project; `task`: refuse one of another task."""
    path = Path(path)
    raw = safe_torch_load(path)
    stamp = raw.get(STAMP_KEY)
    if not (isinstance(stamp, dict) and stamp.get("format") == FORMAT):
        if isinstance(stamp, dict) and isinstance(stamp.get("format"), int) and stamp["format"] > FORMAT:
            raise CheckpointError(f"{path} was written by a newer lightning_compress (checkpoint format "
                                  f"{stamp['format']}, this one reads up to {FORMAT}); upgrade the package")
        stamp = _legacy_stamp(raw)
        if stamp is None:
            raise CheckpointError(f"{path} is not a lightning_compress checkpoint (no `{STAMP_KEY}` stamp with a task)")
    if not isinstance(raw.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} has no state_dict of weights")
    expected = stamp.get("weights_sha256")
    if stamp.get("format") == FORMAT and (not isinstance(expected, str) or not isinstance(stamp.get("config"), dict)):
        raise CheckpointError(f"{path}: its lightning_compress stamp is incomplete (no weights sha256 or config): "
                              "not a checkpoint written by lightning_compress")
    if expected is not None and weights_checksum(raw["state_dict"]) != expected:
        raise CheckpointError(f"checkpoint {path} is damaged: its weights do not match the sha256 stamped when it was saved")
    if task is not None and stamp["task"] != task:
        raise CheckpointError(f"{path} is a `{stamp['task']}` checkpoint; this command needs a `{task}` checkpoint")
    return Checkpoint(path=path, task=stamp["task"], config=stamp.get("config") or {}, backbone=stamp.get("backbone"),
                      state_dict=raw["state_dict"], raw=raw)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic writes and the safe loader for resuming."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return safe_torch_load(path, map_location=map_location or "cpu")
