"""Writes that never leave a half-written file: temporary file in the same folder, fsync, rename.

The temporary file is `.NAME.tmp-PID`. A process killed mid-write (SIGKILL, power loss)
leaves it behind; the next write to NAME removes those whose process is gone, and the
checkpoint loader refuses to read one (`is_temporary`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def is_temporary(path: str | os.PathLike) -> bool:
    """A temporary file of an atomic write (finished or interrupted), never a result."""
    return _TEMPORARY.match(Path(path).name) is not None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete `.NAME.tmp-PID` files beside `path` whose process no longer runs."""
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f".{glob_escape(path.name)}.tmp-*"):
        match = _TEMPORARY.match(candidate.name)
        if match and match["name"] == path.name and not _process_alive(int(match["pid"])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def prepare_atomic_write(path: str | os.PathLike) -> Path:
    """The temporary path to write `path` through, after removing stale ones of dead writers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    return temporary_path(path)


def _atomic_write(path: str | os.PathLike, write) -> None:
    path = Path(path)
    tmp = prepare_atomic_write(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    _atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
