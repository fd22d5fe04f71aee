"""Where a run writes (<output_dir>/<name>/version_K/) and which checkpoint `resume` means.

The version is fixed before the Trainer starts, identically on every rank (no rank creates
a folder before all have joined the process group), so all ranks agree on the run folder.
A resumed run keeps its version: TensorBoard continues the same curves.
"""

from __future__ import annotations

import json
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


def new_eval_folder(checkpoint_path: str | Path, step: int | None) -> Path:
    """Where `lcompress eval CKPT` writes without --out: a new folder in the checkpoint's run,
    <run>/eval/<checkpoint stem>-step<N>[-K], never one that exists (the training run's own
    eval_test/ and earlier evaluations are kept)."""
    path = Path(checkpoint_path).resolve()
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    base = f"{path.stem}-step{step}" if step is not None else path.stem
    folder, k = run / "eval" / base, 2
    while folder.exists():
        folder, k = run / "eval" / f"{base}-{k}", k + 1
    return folder


def record_evaluated_checkpoint(metrics_file: str | Path, checkpoint: str | Path, step: int | None) -> None:
    """Add which checkpoint (absolute path) and training step an evaluation scored to its
    metrics.json (a list of rows becomes {"checkpoint", "step", "rows"})."""
    from .reports import write_json

    metrics_file = Path(metrics_file)
    if not metrics_file.is_file():
        return
    metrics = json.loads(metrics_file.read_text())
    origin = {"checkpoint": str(Path(checkpoint).resolve()), "step": step}
    write_json(metrics_file, {**origin, **metrics} if isinstance(metrics, dict) else {**origin, "rows": metrics})
