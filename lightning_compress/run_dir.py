"""Where a run writes (<output_dir>/<name>/version_K/) and which checkpoint `resume` means.

The version is fixed before the Trainer starts, identically on every rank (no rank creates
a folder before all have joined the process group), so all ranks agree on the run folder.
A resumed run keeps its version: TensorBoard continues the same curves.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

from .config import ConfigError


def versions(root: Path) -> list[int]:
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(r"version_(\d+)", p.name)) and p.is_dir())


def resumable_checkpoints(run_dir: Path) -> list[Path]:
    """last.ckpt and SLURM's pre-emption checkpoints (hpc_ckpt_K.ckpt), newest first."""
    candidates = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    return sorted((p for p in candidates if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)


def plan_run(cfg: DictConfig, resumable=resumable_checkpoints, what: str = "a checkpoints/last.ckpt") -> tuple[int, str | None]:
    """(version, checkpoint to resume from or None) for this run's `resume` setting.
    `resumable(run_dir)` lists what a run folder can be resumed from, newest first (`what`
    names it in the error): Lightning checkpoints by default."""
    root = Path(cfg.output_dir) / cfg.name
    existing = versions(root)
    fresh = (existing[-1] + 1) if existing else 0
    resume = cfg.resume
    if resume is False:
        return fresh, None
    if resume is True or resume == "auto":
        for version in reversed(existing):
            found = resumable(root / f"version_{version}")
            if found:
                return version, str(found[0])
        if resume is True:
            raise ConfigError(f"resume=true but no run under {root} has {what} to resume from")
        return fresh, None
    path = Path(resume).expanduser()
    if not path.is_file():
        raise ConfigError(f"resume={resume!r}: no such checkpoint file")
    # A checkpoint inside <root>/version_K/checkpoints continues that version's logs.
    for parent in path.resolve().parents:
        match = re.fullmatch(r"version_(\d+)", parent.name)
        if match and parent.parent == root.resolve():
            return int(match.group(1)), str(path)
    return fresh, str(path)
