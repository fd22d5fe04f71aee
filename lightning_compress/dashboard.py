"""What a run shows while it trains: TensorBoard logger, validation before training,
throughput and gradient norm, the best checkpoint's step, validation curves as a figure,
and the run's summary (HParams + a results table) when it ends. Every task trained by
`lcompress train` gets all of it through runner.py.

One step numbering everywhere: a value is logged at `trainer.global_step`, the number of
optimiser steps done when it was measured. Validation after the 50th step is at 50 in the
scalars and in the text tables alike (Lightning's own index would put it at 49), and the
validation before training is at 0.
"""

from __future__ import annotations

import logging
import time
import warnings

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm, rank_zero_only

from .reports import markdown_table, new_figure, write_figure


class RunLogger(TensorBoardLogger):
    """TensorBoardLogger that logs at the trainer's optimiser step, leaves out Lightning's
    `epoch` scalar (runs are counted in steps; the stream repeats, so an epoch means nothing)
    and files LearningRateMonitor's `lr-AdamW` under `train/lr`, so the scalars are the
    `train` and `val` groups only."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trainer = None  # set by StepNumbering.setup

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        metrics = {_tag(k): v for k, v in metrics.items() if k != "epoch"}
        if self.trainer is not None:
            step = self.trainer.global_step
        if metrics:
            super().log_metrics(metrics, step)

    @rank_zero_only
    def log_summary(self, hparams: dict, metric_tags: list[str], results_markdown: str, step: int) -> None:
        """HParams (in the order given) whose metric columns are existing scalar tags, read
        from the last value of each (no new scalar is written), and a results text table."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        exp, ssi, sei = hparams_summary(hparams, {tag: 0.0 for tag in metric_tags})
        writer = self.experiment._get_file_writer()
        for summary in (exp, ssi, sei):
            writer.add_summary(summary, step)
        self.experiment.add_text("results/summary", results_markdown, global_step=step)


def _tag(key: str) -> str:
    if key.startswith("lr-"):  # lr-AdamW, lr-AdamW/pg2
        group = key.partition("/")[2]
        return "train/lr" + (f"_{group}" if group else "")
    return key


class StepNumbering(Callback):
    """Hands the trainer to RunLogger, so every value is logged at the global step."""

    def setup(self, trainer, module, stage) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, RunLogger):
                logger.trainer = trainer


class ValidateBeforeTraining(Callback):
    """One validation at step 0 of a fresh run: the starting loss and the untrained model's
    samples, the baseline every later validation is read against. Checkpoints skip step 0
    (runner's BestCheckpoint / LastCheckpoint). A resumed run does not repeat it."""

    def on_train_start(self, trainer, module) -> None:
        if trainer.global_step != 0 or not trainer.enable_validation or trainer.fast_dev_run:
            return
        loop = trainer.fit_loop.epoch_loop
        trainer.validating = True
        first = trainer._logger_connector._first_loop_iter
        loop.val_loop.run()
        trainer.training = True
        trainer._logger_connector._first_loop_iter = first


class TrainingSpeed(Callback):
    """`train/<unit>_per_s` (e.g. tokens or bytes a second over the last logging interval,
    all ranks together) in the scalars and the progress bar, and `train/grad_norm` (the L2
    norm of all gradients before the optimiser step, before any clipping), both every
    `trainer.log_every_n_steps` steps."""

    def __init__(self, unit: str, count):
        self.unit, self.count = unit, count  # count(batch) -> units in one micro-batch
        self._units, self._since, self._validation_start = 0, None, 0.0
        self._logged_step = -1  # under accumulation several micro-batches end at one step

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._units += self.count(batch) * trainer.world_size
        step = trainer.global_step
        if step % trainer.log_every_n_steps == 0 and step != self._logged_step and self._since is not None:
            self._logged_step = step
            seconds = time.perf_counter() - self._since
            if seconds > 0 and self._units:
                module.log(f"train/{self.unit}_per_s", self._units / seconds, prog_bar=True, batch_size=1,
                           rank_zero_only=True)
            self._units, self._since = 0, time.perf_counter()

    # Time spent validating is not training time.
    def on_validation_start(self, trainer, module) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, module) -> None:
        if self._since is not None and not trainer.sanity_checking:
            self._since += time.perf_counter() - self._validation_start

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if (trainer.global_step + 1) % trainer.log_every_n_steps:
            return
        norms = grad_norm(module, norm_type=2)  # Lightning's: per parameter and "grad_2.0_norm_total"
        if norms:
            module.log("train/grad_norm", norms["grad_2.0_norm_total"], batch_size=1)


class ValidationHistory(Callback):
    """Every validation's `val/*` values, kept on rank 0. At the end of fit the curves are one
    figure (run folder and TensorBoard Images), with the best checkpoint's step
    (`checkpoint.best_step`) marked."""

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.history: dict[str, list[tuple[int, float]]] = {}

    @property
    def best_step(self) -> int | None:
        return getattr(self.checkpoint, "best_step", None)

    @rank_zero_only
    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        for tag, value in trainer.callback_metrics.items():
            if tag.startswith("val/"):
                series = self.history.setdefault(tag, [])
                if not series or series[-1][0] != trainer.global_step:
                    series.append((trainer.global_step, float(value)))

    def figure(self, title: str):
        """Each val/* metric against the step, one panel each (None when nothing was validated)."""
        tags = sorted(t for t, s in self.history.items() if s)
        if not tags:
            return None
        columns = min(3, len(tags))
        rows = (len(tags) + columns - 1) // columns
        figure, _ = new_figure(4.2 * columns, 3.0 * rows)
        figure.clf()  # one panel per metric instead of new_figure's single axis
        for i, tag in enumerate(tags):
            axis = figure.add_subplot(rows, columns, i + 1)
            steps, values = zip(*self.history[tag])
            axis.plot(steps, values, marker="o", markersize=3)
            if self.best_step is not None:
                axis.axvline(self.best_step, color="grey", linestyle=":", linewidth=1)
            axis.set_title(tag, fontsize=9)
            axis.set_xlabel("step", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(True, alpha=0.3)
        figure.suptitle(title + ("" if self.best_step is None else f" (dotted: best checkpoint, step {self.best_step})"),
                        fontsize=10)
        figure.tight_layout()
        return figure


def write_validation_figure(history: ValidationHistory, run_dir, logger, title: str, step: int):
    """validation_curves.png in the run folder, and `val/curves` in TensorBoard (Images, and in
    Time Series beside the val scalars: a tag group of its own would sort before `train`)."""
    figure = history.figure(title)
    if figure is None:
        return None
    path = write_figure(run_dir / "validation_curves.png", figure)
    if logger is not None:
        logger.experiment.add_figure("val/curves", figure, global_step=step)
    return path


def results_markdown(metrics: dict, best_step: int | None, checkpoint: str, split: str) -> str:
    """The final evaluation as a two-column table (floats to 4 decimals)."""
    rows = [["checkpoint", checkpoint], ["best step", "" if best_step is None else best_step], ["evaluated on", split]]
    rows += [[k, f"{v:.4f}" if isinstance(v, float) else v] for k, v in metrics.items() if isinstance(v, (int, float, str))]
    return markdown_table(["", "value"], rows)


class _DropTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_known_noise() -> None:
    """Silence what the console shows at every run that a user cannot act on:
    - "Found N module(s) in eval mode at the start of training": the frozen decoder is kept
      in eval mode on purpose (no dropout in the model that reads the memory);
    - "`isinstance(treespec, LeafSpec)` is deprecated": Lightning 2.6's own call under torch
      2.13, not ours;
    - Lightning's advertisement for its cloud logger."""
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTip) for f in log.filters):
        log.addFilter(_DropTip())
