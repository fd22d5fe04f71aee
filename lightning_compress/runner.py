"""`lcompress train`: the fit sequence every Lightning task shares.

    launcher check -> task preflight -> run folder -> seed -> task.build -> logger ->
    trainer (global batch -> micro-batch x accumulation) -> fit -> rank 0: task.finish,
    HParams with the final metrics

Launch on 1 node:  lcompress train experiments/prompt/aoc.yaml trainer.devices=8
Launch on N nodes: torchrun/srun start the same command on every node with
                   trainer.num_nodes=N; Lightning reads the rank from the environment
                   (experiments/launch/ has the scripts).
Resume:            the same command with resume=true (or auto, or a checkpoint path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from .checkpoint_io import AtomicCheckpointIO
from .config import ConfigError, check_accelerator_here, flat_hparams
from .distributed import FailedOnAnotherRank, all_ranks_succeeded, batch_plan, check_launcher, open_process_group
from .run_dir import plan_run
from .task import get_task


@dataclass
class Build:
    """What a task's `build(cfg, trainer_kwargs)` hands the runner."""

    module: pl.LightningModule
    datamodule: pl.LightningDataModule
    # Validation metric that picks best.ckpt (lower is better).
    monitor: str
    callbacks: list = field(default_factory=list)
    # Replaces trainer.strategy when set (e.g. an FSDP strategy that knows the model's blocks).
    strategy: Any = None
    # Progress bar refresh, in batches.
    progress_refresh: int = 1
    # best.ckpt is chosen among validations from this optimiser step on (earlier steps train
    # a different model, e.g. a warm start).
    best_from_step: int = 0
    # Parameters that stop receiving gradients mid-run (e.g. faded-out MLPs): DDP must know.
    ddp_find_unused_parameters: bool = False


class ValidateAtLastStep(Callback):
    """Validate at the run's last optimiser step if the schedule would not: Lightning runs a
    validation at the batch where `trainer.should_stop` is set, so a run shorter than
    `trainer.val_check_interval` (or not a multiple of it) still ends with validation
    metrics, TensorBoard samples and a best checkpoint. A step that validates anyway is not
    validated twice (one check per batch). Every rank sets the flag at the same step."""

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


@rank_zero_only
def rank_zero_print(*args) -> None:
    print(*args)


def trainer_kwargs(cfg: DictConfig) -> dict:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    max_steps = kwargs.get("max_steps")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ConfigError(f"trainer.max_steps must be a positive integer (the training stream repeats), got {max_steps!r}")
    if "precision" not in kwargs:
        # bf16-mixed where the hardware has it, as the papers train; fp32 on CPU.
        kwargs["precision"] = "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    return kwargs


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose best (top-k) choice ignores validations before `from_step`."""

    def __init__(self, from_step: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.from_step = from_step

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:
        if trainer.global_step >= self.from_step:
            super()._save_topk_checkpoint(trainer, monitor_candidates)


def make_trainer(cfg: DictConfig, kwargs: dict, logger, monitor: str, callbacks: list, datamodule, resume_from=None,
                 refresh: int = 1, best_from_step: int = 0):
    """The Trainer every run uses: best (by `monitor`) and last checkpoints, optionally a
    periodic last.ckpt, atomic checkpoint writes, and the global batch turned into a
    per-device micro-batch (set on `datamodule`) plus gradient accumulation."""
    run_dir = Path(logger.log_dir)
    best = BestCheckpoint(best_from_step, dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="min",
                          save_top_k=1, save_last=True)
    all_callbacks = [best, LearningRateMonitor(logging_interval="step"), ValidateAtLastStep()]
    if kwargs.get("enable_progress_bar", True):
        all_callbacks.append(TQDMProgressBar(refresh_rate=refresh))
    if cfg.checkpoint_every_n_steps:
        # Only last.ckpt, often: what a killed or pre-empted run resumes from.
        all_callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", save_top_k=0, save_last=True,
                                             every_n_train_steps=cfg.checkpoint_every_n_steps))
    trainer = pl.Trainer(logger=logger, callbacks=all_callbacks + callbacks, plugins=[AtomicCheckpointIO()],
                         default_root_dir=run_dir, **kwargs)
    micro, accumulate = batch_plan(cfg.data.batch_size, cfg.data.micro_batch_size, trainer.world_size)
    trainer.accumulate_grad_batches = accumulate
    datamodule.batch_size = micro
    if isinstance(trainer.val_check_interval, int):
        # Lightning counts val_check_interval in micro-batches; configs count optimiser steps,
        # so validation keeps its place in the run when accumulation changes.
        trainer.val_check_interval *= accumulate
    rank_zero_print(
        f"global batch {cfg.data.batch_size} = {micro} per device x {trainer.world_size} processes x {accumulate} "
        f"accumulated" + (f"; resuming from {resume_from}" if resume_from else "")
    )
    return trainer, best


def _on_all_ranks(stage: str, work):
    """Run this rank's part of a stage, then agree with the other ranks: if any failed, every
    rank raises (the failing one its own error), so no rank moves on alone."""
    try:
        result = work()
    except Exception:
        try:
            all_ranks_succeeded(False)
        except Exception:  # a broken process group must not hide the error itself
            pass
        raise
    if not all_ranks_succeeded(True):
        raise FailedOnAnotherRank(f"another process failed while {stage} (its error is in its own log, "
                                  "error-rank<R>.txt in a sweep cell); this one stops too")
    return result


def run_fit(cfg: DictConfig, callbacks: list | None = None) -> dict:
    """Fit the task `cfg.task`, keep the best checkpoint, let the task finish on rank 0.
    `callbacks` are added to the Trainer's (for experiments that watch the run). Returns
    {"checkpoint", "run_dir", "metrics", ...} on rank 0, {} on the other ranks."""
    task = get_task(cfg.task)
    if task.build is None:
        verbs = ", ".join(f"lcompress {v}" for v in task.verbs) or "its own commands"
        raise ConfigError(f"task {task.name!r} is not trained with `lcompress train`; use {verbs}")
    check_accelerator_here(cfg.trainer)
    kwargs = trainer_kwargs(cfg)
    check_launcher(kwargs)
    if task.preflight is not None:
        task.preflight(cfg)  # a missing data path fails now, not after a model loads
    version, resume_from = plan_run(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    open_process_group(cfg.distributed_timeout_minutes, kwargs.get("accelerator"))
    build = _on_all_ranks("building the task", lambda: task.build(cfg, kwargs))
    if kwargs.get("strategy") == "ddp":
        # The process group's timeout bounds how long ranks wait for rank 0's evaluation.
        kwargs["strategy"] = DDPStrategy(timeout=timedelta(minutes=cfg.distributed_timeout_minutes),
                                         find_unused_parameters=build.ddp_find_unused_parameters)
    if build.strategy is not None:
        kwargs["strategy"] = build.strategy
    logger = TensorBoardLogger(save_dir=cfg.output_dir, name=cfg.name, version=version, default_hp_metric=False)
    trainer, best = make_trainer(cfg, kwargs, logger, build.monitor, build.callbacks + (callbacks or []),
                                 build.datamodule, resume_from, build.progress_refresh, build.best_from_step)
    trainer.fit(build.module, datamodule=build.datamodule, ckpt_path=resume_from)
    checkpoint = best.best_model_path or best.last_model_path
    run_dir = Path(logger.log_dir)
    # Rank 0 evaluates; the others wait for its verdict (up to distributed_timeout_minutes),
    # so a failed evaluation fails the run on every rank.
    finish = task.finish if task.finish is not None and trainer.is_global_zero else (lambda *args: {})
    result = _on_all_ranks("finishing on rank 0", lambda: finish(cfg, build, trainer, checkpoint, run_dir))
    if not trainer.is_global_zero:
        return {}
    metrics = result.get("metrics", {})
    logger.log_hyperparams(flat_hparams(cfg), {f"final/{k}": v for k, v in metrics.items() if isinstance(v, float)})
    print(f"checkpoint: {checkpoint}\nTensorBoard: tensorboard --logdir {cfg.output_dir}")
    return {"checkpoint": checkpoint, "run_dir": str(run_dir), "metrics": metrics, **result}
