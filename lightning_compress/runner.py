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

import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from .checkpoint_io import AtomicCheckpointIO
from .config import ConfigError, flat_hparams
from .dashboard import (RunLogger, StepNumbering, TrainingSpeed, ValidateBeforeTraining, ValidationHistory,
                        quiet_known_noise, results_markdown, write_validation_figure)
from .distributed import FailedOnAnotherRank, all_ranks_succeeded, batch_plan, check_launcher, open_process_group
from .run_dir import plan_run, record_evaluated_checkpoint
from .task import get_task
from .trainer_config import check_accelerator_here


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
    # (unit, count(batch)): what a training batch holds, for `train/<unit>_per_s`
    # (e.g. ("tokens", lambda b: b["input_ids"].numel())); None: not measured.
    throughput: tuple | None = None
    # The settings that define the run, first in HParams under short names
    # (e.g. {"encoder": "mlp_free", "n": 16, "m": 4, "ratio": 4.0}); the whole config follows.
    headline: dict = field(default_factory=dict)


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


class RunProgressBar(TQDMProgressBar):
    """The bar shows what a run is judged by, under short names: train loss, throughput and
    the last validation loss (`loss`, `tokens/s`, `val_loss`), no `v_num`."""

    def get_metrics(self, trainer, module) -> dict:
        shown = {}
        for key, value in super().get_metrics(trainer, module).items():
            if key == "v_num":
                continue
            name = key.removeprefix("train/").replace("val/", "val_").replace("_per_s", "/s")
            shown[name] = f"{float(value):.0f}" if name.endswith("/s") else value
        return shown

    # Lightning's bars, created with their totals (a bar created without one prints "0/?"
    # before Lightning sets it).
    def init_train_tqdm(self):
        from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

        total = self.total_train_batches
        return Tqdm(desc=self.train_description, position=2 * self.process_position, disable=self.is_disabled,
                    leave=True, dynamic_ncols=True, file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT,
                    total=None if total == float("inf") else total)

    def init_validation_tqdm(self):
        from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

        has_main_bar = self.trainer.state.fn != "validate"
        total = sum(self.trainer.num_val_batches)
        return Tqdm(desc=self.validation_description, position=2 * self.process_position + has_main_bar,
                    disable=self.is_disabled, leave=not has_main_bar, dynamic_ncols=True, file=sys.stdout,
                    bar_format=self.BAR_FORMAT, total=None if total == float("inf") else total)


def hparam_value(value):
    """A value as TensorBoard's HParams should show it. Its numbers are printed with four
    decimals (16 as "16.0000", a learning rate of 1e-5 as "0.0000"), so numbers go as text:
    16, 0.0005, 1e-05; booleans and strings as they are."""
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_hparams(cfg: DictConfig, headline: dict) -> dict:
    """HParams: the run's defining settings first (short names, in the task's order), then
    every config key (dotted). TensorBoard sorts the columns by name (and shows the first
    few), so the headline names carry leading spaces, most on the first: spaces sort before
    any letter and the browser does not show them."""
    width = len(headline)
    first = {" " * (width - i) + name: hparam_value(v) for i, (name, v) in enumerate(headline.items())}
    return {**first, **{k: hparam_value(v) for k, v in flat_hparams(cfg).items()}}


def trainer_kwargs(cfg: DictConfig) -> dict:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    max_steps = kwargs.get("max_steps")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ConfigError(f"trainer.max_steps must be a positive integer (the training stream repeats), got {max_steps!r}")
    if "precision" not in kwargs:
        # bf16-mixed where the hardware has it, as the papers train; fp32 on CPU.
        kwargs["precision"] = "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    return kwargs


class LastCheckpoint(ModelCheckpoint):
    """last.ckpt: everything resume needs (weights, optimiser, schedulers, loops, data
    position). Not at step 0 (the validation before training has nothing to keep)."""

    def _should_skip_saving_checkpoint(self, trainer) -> bool:
        return trainer.global_step == 0 or super()._should_skip_saving_checkpoint(trainer)


class BestCheckpoint(LastCheckpoint):
    """best.ckpt: weights only (the task's own stamp: trained weights, config, decoder
    identity; no optimiser state, a third of last.ckpt's size for Adam), chosen by the
    monitored validation metric among validations from `from_step` on. `best_step` is the
    step it was taken at, logged as `val/best_step` after each validation."""

    def __init__(self, from_step: int = 0, **kwargs):
        super().__init__(save_weights_only=True, save_last=False, **kwargs)
        self.from_step = from_step
        self.best_step: int | None = None

    def _save_topk_checkpoint(self, trainer, monitor_candidates) -> None:
        if trainer.global_step >= self.from_step:
            super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _update_best_and_save(self, current, trainer, monitor_candidates) -> None:
        super()._update_best_and_save(current, trainer, monitor_candidates)
        self.best_step = trainer.global_step

    def on_validation_end(self, trainer, module) -> None:
        super().on_validation_end(trainer, module)
        if self.best_step is not None and trainer.logger is not None and not trainer.sanity_checking:
            trainer.logger.log_metrics({"val/best_step": self.best_step}, trainer.global_step)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.best_step = state_dict.get("best_step")


def make_trainer(cfg: DictConfig, kwargs: dict, logger, monitor: str, callbacks: list, datamodule, resume_from=None,
                 refresh: int = 1, best_from_step: int = 0, throughput=None):
    """The Trainer every run uses: best (by `monitor`, weights only) and last (full state)
    checkpoints, optionally a periodic last.ckpt, atomic checkpoint writes, the dashboard's
    callbacks (dashboard.py), and the global batch turned into a per-device micro-batch (set
    on `datamodule`) plus gradient accumulation."""
    run_dir = Path(logger.log_dir)
    best = BestCheckpoint(best_from_step, dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="min",
                          save_top_k=1)
    last = LastCheckpoint(dirpath=run_dir / "checkpoints", save_top_k=0, save_last=True)
    history = ValidationHistory(best)
    all_callbacks = [best, last, history, StepNumbering(), LearningRateMonitor(logging_interval="step"),
                     ValidateAtLastStep()]
    if cfg.validate_before_training:
        all_callbacks.append(ValidateBeforeTraining())
    if throughput is not None:
        all_callbacks.append(TrainingSpeed(*throughput))
    if kwargs.get("enable_progress_bar", True):
        all_callbacks.append(RunProgressBar(refresh_rate=refresh))
    if cfg.checkpoint_every_n_steps:
        # Only last.ckpt, often: what a killed or pre-empted run resumes from.
        all_callbacks.append(LastCheckpoint(dirpath=run_dir / "checkpoints", save_top_k=0, save_last=True,
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
    return trainer, best, history


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
    quiet_known_noise()
    rank_zero_print(f"run folder: {Path(cfg.output_dir) / cfg.name / f'version_{version}'}\n"
                    f"TensorBoard: tensorboard --logdir {cfg.output_dir}")
    pl.seed_everything(cfg.seed, workers=True)
    open_process_group(cfg.distributed_timeout_minutes, kwargs.get("accelerator"))
    build = _on_all_ranks("building the task", lambda: task.build(cfg, kwargs))
    if kwargs.get("strategy") == "ddp":
        # The process group's timeout bounds how long ranks wait for rank 0's evaluation.
        kwargs["strategy"] = DDPStrategy(timeout=timedelta(minutes=cfg.distributed_timeout_minutes))
    if build.strategy is not None:
        kwargs["strategy"] = build.strategy
    logger = RunLogger(save_dir=cfg.output_dir, name=cfg.name, version=version, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    trainer, best, history = make_trainer(cfg, kwargs, logger, build.monitor, build.callbacks + (callbacks or []),
                                          build.datamodule, resume_from, build.progress_refresh, build.best_from_step,
                                          build.throughput)
    trainer.fit(build.module, datamodule=build.datamodule, ckpt_path=resume_from)
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = best.best_model_path or (str(last) if last.is_file() else "")
    # Rank 0 evaluates and writes the run's summary; the others wait for its verdict (up to
    # distributed_timeout_minutes), so a failed evaluation fails the run on every rank and no
    # rank exits while rank 0 still writes.
    def finish_on_rank_zero() -> dict:
        result = task.finish(cfg, build, trainer, checkpoint, run_dir) if task.finish is not None else {}
        if result.get("folder") and checkpoint:
            record_evaluated_checkpoint(Path(result["folder"]) / "metrics.json", checkpoint, best.best_step)
        # Final metrics read as final: HParams columns are the validation tags (their last
        # values, at the last step), and the held-out evaluation is a text table, not step-0 scalars.
        step = trainer.global_step
        split = getattr(getattr(cfg, "eval", None), "split", "test")
        figure = write_validation_figure(history, run_dir, logger, f"{cfg.name}: validation", step)
        logger.log_summary(run_hparams(cfg, build.headline), sorted(history.history),
                           results_markdown(result.get("metrics", {}), best.best_step, checkpoint, split), step)
        # Lightning closed its writer at the end of fit; these came through a new one: close it
        # too, so the figure and summary are on disk now, not at the writer's next timed flush.
        logger.finalize("success")
        return {**result, "figure": str(figure) if figure else None}

    result = _on_all_ranks("finishing on rank 0", finish_on_rank_zero if trainer.is_global_zero else dict)
    if not trainer.is_global_zero:
        return {}
    print(f"checkpoint: {checkpoint}" + (f" (step {best.best_step})" if best.best_step is not None else "")
          + (f"\nvalidation curves: {result['figure']}" if result["figure"] else "")
          + f"\nTensorBoard: tensorboard --logdir {cfg.output_dir}")
    return {"checkpoint": checkpoint, "run_dir": str(run_dir), "metrics": result.get("metrics", {}),
            "best_step": best.best_step, **result}
