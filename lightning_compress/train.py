"""`lcompress train`: fit a PromptCompressor, keep the best checkpoint by validation loss,
then regenerate the held-out test split with it and print the metrics table.

Launch on 1 node:  lcompress train experiments/aoc.yaml trainer.devices=8
Launch on N nodes: torchrun/srun start the same command on every node with
                   trainer.num_nodes=N; Lightning reads the rank from the environment
                   (experiments/launch/ has the scripts).
Resume:            the same command with resume=true (or auto, or a checkpoint path).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from data_modules.arxiv_abstracts import ArxivAbstractsDataModule
from data_modules.records import resolve_local

from .backbone import load_backbone
from .callbacks import LatentInterpolation, RegenerationSamples, markdown_table
from .checkpoint_io import AtomicCheckpointIO
from .config import ConfigError
from .distributed import batch_plan, check_launcher, fsdp_strategy
from .evaluate import COLUMNS, evaluate, format_row, write_results
from .modules import PromptCompressor
from .run_dir import plan_run


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


def make_trainer(cfg: DictConfig, kwargs: dict, logger, monitor: str, callbacks: list, datamodule, resume_from=None, refresh: int = 1):
    """The Trainer every run uses: best (by `monitor`) and last checkpoints, optionally a
    periodic last.ckpt, atomic checkpoint writes, and the global batch turned into a
    per-device micro-batch (set on `datamodule`) plus gradient accumulation."""
    run_dir = Path(logger.log_dir)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode="min", save_top_k=1, save_last=True)
    all_callbacks = [best, LearningRateMonitor(logging_interval="step")]
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


def train(cfg: DictConfig, callbacks: list | None = None) -> dict:
    """Fit, keep the best checkpoint, evaluate it on rank 0. `callbacks` are added to the
    Trainer's (for experiments that need to watch the run)."""
    kwargs = trainer_kwargs(cfg)
    check_launcher(kwargs)
    resolve_local(cfg.data.source)  # a missing data path fails now, not after the decoder loads
    version, resume_from = plan_run(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    backbone = load_backbone(cfg.decoder.source, cfg.decoder.dtype)
    module = PromptCompressor(cfg, backbone)
    enc = module.encoder
    rank_zero_print(
        f"encoder {cfg.model.encoder.name}: {enc.trainable_parameter_count():,} trainable of "
        f"{enc.parameter_count():,} parameters; decoder: {sum(p.numel() for p in module.decoder.parameters()):,} (frozen)"
    )
    datamodule = ArxivAbstractsDataModule.from_config(cfg.data, cfg.eval, backbone.tokenizer)
    logger = TensorBoardLogger(save_dir=cfg.output_dir, name=cfg.name, version=version, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    callbacks = [RegenerationSamples(cfg.callbacks.num_samples)] + (callbacks or [])
    if cfg.callbacks.interpolation_points:
        callbacks.append(LatentInterpolation(cfg.callbacks.interpolation_points))
    if kwargs.get("strategy") == "fsdp":
        kwargs["strategy"] = fsdp_strategy(module.decoder, cfg.model.encoder.name)
    trainer, checkpoint = make_trainer(cfg, kwargs, logger, "val/loss", callbacks, datamodule, resume_from)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    if not trainer.is_global_zero:
        return {}
    best = checkpoint.best_model_path or checkpoint.last_model_path
    if best:
        module.load_trainable_state(torch.load(best, map_location="cpu", weights_only=False)["state_dict"], best)
    results = evaluate(module.to(trainer.strategy.root_device), datamodule, cfg.eval.split, cfg.eval.num_samples, cfg.eval.batch_size)
    folder = write_results(run_dir / f"eval_{cfg.eval.split}", results)
    logger.log_hyperparams(
        _flat_hparams(cfg), {f"final/{k}": v for k, v in results["metrics"].items() if isinstance(v, float)}
    )
    print(markdown_table(COLUMNS, [format_row(results["metrics"])]))
    print(f"checkpoint: {best}\nmetrics and regenerations: {folder}\nTensorBoard: tensorboard --logdir {cfg.output_dir}")
    return {"checkpoint": best, "run_dir": str(run_dir), **results}


def _flat_hparams(cfg: DictConfig) -> dict:
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            else:
                flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat
