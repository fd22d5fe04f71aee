"""`lcompress sweep GRID.yaml`: a grid of runs of one task, then one table and one figure.

A grid file says `kind: sweep`, the `task` of its cells, the experiment file every cell
starts from (`run`), the grid's `name` and `output_dir`, `overrides` shared by all cells and
the task's own axes (the prompt task: `encoders` x `pairs`). The task's `SweepSpec` turns
the axes into cells and supplies the table's columns and the figure; this module does the
rest, the same for every task:

- every cell's full config is built and validated before the first cell runs (and the
  task's `preflight`, e.g. whether the data can supply each cell);
- each cell is a normal run in <output_dir>/<name>/<cell>/, closed by a `cell.json` with its
  config and metrics: a cell whose `cell.json` matches its current config is reused;
- a cell that raises is recorded as failed (traceback in its error.txt) and the grid goes
  on; the command then exits 1;
- results.{md,csv,json} and <figure>.png in the grid folder, both also in TensorBoard
  (`summary/`).
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from .atomic import atomic_write_text
from .config import (
    ConfigError, check_keys, config_to_dict, flatten, load_config, merge_error, override_value, read_yaml, task_of_file,
)
from .reports import mirror_to_tensorboard, rows_markdown, write_figure, write_table
from .task import Task, all_tasks, default_task, get_task


@dataclass
class SweepConfig:
    """Keys of every grid file; a task's grid schema adds its axes."""

    # Marks a grid file (experiment files have no `kind`).
    kind: str = "sweep"
    # The task of every cell (none: the default task).
    task: str = ""
    # The experiment YAML every cell starts from (relative to the grid file).
    run: str = ""
    # Grid folder name under output_dir.
    name: str = "sweep"
    output_dir: str = "runs"
    # key: value overrides of the run config shared by every cell.
    overrides: dict = field(default_factory=dict)


@dataclass
class Cell:
    name: str
    # The cell's coordinates, its first table columns (e.g. encoder, n, m, ratio).
    labels: dict
    config: DictConfig


@dataclass(frozen=True)
class SweepSpec:
    """What a task tells the generic sweep."""

    # Dataclass of the task's grid file (a SweepConfig subclass).
    schema: type
    # cells(grid, where) -> [(cell name, labels, [key=value overrides])]; ConfigError on bad axes.
    cells: Callable
    # Table columns: the labels, then metric names (looked up in each cell's metrics).
    columns: list
    # figure(rows, title) -> a matplotlib figure, saved as <figure_name>.png; None: no figure.
    figure: Callable | None = None
    figure_name: str = "figure"
    # title(grid, cells) -> the figure's title.
    title: Callable | None = None
    # preflight(cells): refuse before anything runs.
    preflight: Callable | None = None
    # recognise(yaml_dict) -> True for the task's grid files of an older form without `kind`.
    recognise: Callable | None = None
    # run(cfg) -> {"metrics": ..., "run_dir": ...}; None: `lcompress train`'s fit sequence.
    run: Callable | None = None
    # report(grid, cells, records, rows, grid_dir) -> {"figures": {tag: fig}, "texts": {tag: md}}:
    # the task's own tables and figures beyond the per-cell table (written by the task,
    # mirrored into TensorBoard here).
    report: Callable | None = None


def sweep_task(user: dict) -> Task | None:
    """The task whose grid file this YAML mapping is, or None for an experiment file."""
    if user.get("kind") == "sweep":
        task = get_task(user["task"]) if user.get("task") else default_task()
        if task.sweep is None:
            raise ConfigError(f"task {task.name!r} has no sweeps")
        return task
    for task in all_tasks():
        if task.sweep is not None and task.sweep.recognise is not None and task.sweep.recognise(user):
            return task
    return None


def is_sweep_file(path: str | Path) -> bool:
    try:
        return sweep_task(read_yaml(Path(path))) is not None
    except ConfigError:
        return False


def load_sweep(path: str | Path, overrides: list[str] | tuple = ()) -> tuple[SweepConfig, Task, list[Cell]]:
    """Parse and check a grid file; `overrides` (key=value) apply to every cell's run config."""
    path = Path(path)
    user = read_yaml(path, "grid file")
    task = sweep_task(user)
    if task is None:
        raise ConfigError(f"{path} is not a grid file (expected `kind: sweep` and the task of its cells)")
    user = {"kind": "sweep", "task": task.name, **user}  # the older form names neither
    try:
        check_keys(user, task.sweep.schema)
        defaults = OmegaConf.structured(task.sweep.schema)
        grid = OmegaConf.to_object(OmegaConf.merge(defaults, user))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except Exception as err:
        raise ConfigError(f"{path}: {merge_error(defaults, user, err)}") from None
    # `output_dir=` on the command line moves the whole grid; `name` is the grid's own.
    for item in overrides:
        if item.startswith("output_dir="):
            grid.output_dir = item.split("=", 1)[1]
        elif item.startswith("name="):
            raise ConfigError("name= would rename every cell alike; set the grid's `name` in the grid file")
    overrides = [o for o in overrides if not o.startswith("output_dir=")]
    shared = [f"{k}={override_value(v)}" for k, v in flatten(grid.overrides).items()] + list(overrides)
    try:
        run_task = task_of_file(path.parent / grid.run)
    except ConfigError as err:
        raise ConfigError(f"{path}: run: {err}") from None
    if run_task != task.name:
        raise ConfigError(f"{path}: run {grid.run} is a `{run_task}` experiment, the grid's task is `{task.name}`")
    cells = []
    for name, labels, cell_overrides in task.sweep.cells(grid, str(path)):
        where = [f"name={grid.name}/{name}", f"output_dir={grid.output_dir}"]
        try:
            config = load_config(path.parent / grid.run, shared + list(cell_overrides) + where)
        except ConfigError as err:
            raise ConfigError(f"{path}: cell {name}: {err}") from None
        cells.append(Cell(name, labels, config))
    return grid, task, cells


def _steps(cell: Cell):
    return OmegaConf.select(cell.config, "trainer.max_steps", default=None)


def _record(cell: Cell, status: str, metrics: dict | None = None, error: str | None = None, run_dir=None) -> dict:
    return {
        "cell": cell.name, **cell.labels, "status": status, "steps": _steps(cell), "metrics": metrics or {},
        "error": error, "run_dir": run_dir, "config": config_to_dict(cell.config),
    }


# Keys that do not change what a finished cell computed.
_NOT_COMPARED = ("resume", "data.num_workers")


def same_run(stored: dict, current: dict, schema: type) -> bool:
    """Equal configs, where a key the stored run predates counts as equal if the current run
    leaves it at its default (so a new config key does not invalidate finished cells)."""
    stored, current = flatten(stored), flatten(current)
    defaults = flatten(config_to_dict(OmegaConf.structured(schema)))
    for key, value in current.items():
        if key.startswith(_NOT_COMPARED):
            continue
        if key in stored:
            if stored[key] != value:
                return False
        elif key not in defaults or defaults[key] != value:
            return False
    return True


def _finished(cell_dir: Path, cell: Cell, schema: type) -> dict | None:
    marker = cell_dir / "cell.json"
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("status") == "ok" and same_run(record.get("config") or {}, config_to_dict(cell.config), schema):
        return record
    return None


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _is_rank_zero(record: dict) -> bool:
    # The fit sequence returns {} on ranks other than 0: those ranks write nothing.
    return record["status"] == "failed" or bool(record["metrics"])


def run_cell(cell: Cell, grid_dir: Path, run, schema: type) -> dict:
    cell_dir = grid_dir / cell.name
    if (record := _finished(cell_dir, cell, schema)) is not None:
        print(f"[sweep] {cell.name}: finished earlier, reused ({record['run_dir']})")
        return record
    steps = _steps(cell)
    print(f"[sweep] {cell.name}: running" + (f" {steps} steps" if steps else ""))
    try:
        result = run(cell.config)
        record = _record(cell, "ok", result.get("metrics"), run_dir=result.get("run_dir"))
    except Exception as err:  # a failed cell must not stop the grid
        # Under DDP a failure on one rank fails the cell on all (runner._on_all_ranks); each
        # rank keeps its own traceback, rank 0 the cell's record.
        rank = _rank()
        error_file = cell_dir / ("error.txt" if rank == 0 else f"error-rank{rank}.txt")
        cell_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(error_file, traceback.format_exc())
        print(f"[sweep] {cell.name}: FAILED: {type(err).__name__}: {err} (traceback in {error_file})")
        record = _record(cell, "failed", error=f"{type(err).__name__}: {err}")
    if _rank() == 0 and _is_rank_zero(record):
        cell_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cell_dir / "cell.json", json.dumps(record, indent=2) + "\n")
    return record


def table_rows(cells: list[Cell], records: list[dict], columns: list[str]) -> list[dict]:
    rows = []
    for cell, record in zip(cells, records):
        row = dict(cell.labels)
        for column in columns:
            if column not in row and column not in ("steps", "status"):
                row[column] = record["metrics"].get(column, "")
        row["steps"], row["status"] = record["steps"], record["status"]
        rows.append(row)
    return rows


def sweep_command(args) -> int:
    """A CLI verb over a grid file (`lcompress sweep`, and task verbs such as `ablation`):
    exit status 1 if any cell failed."""
    from .distributed import close_process_group

    records = run_sweep(args.grid, args.overrides)
    close_process_group()  # every rank ran every cell (a failed cell fails on all ranks alike)
    return 1 if any(r["status"] == "failed" for r in records) else 0


def run_sweep(path: str | Path, overrides: list[str] | tuple = (), train_fn=None) -> list[dict]:
    """Run every cell of a grid file (reusing finished ones), then write its table and figure."""
    grid, task, cells = load_sweep(path, overrides)
    spec = task.sweep
    if spec.preflight is not None:
        spec.preflight(cells)
    if train_fn is None:
        from .runner import run_fit

        train_fn = spec.run or run_fit
    grid_dir = Path(grid.output_dir) / grid.name
    print(f"[sweep] {len(cells)} cells: {', '.join(c.name for c in cells)}")
    records = [run_cell(cell, grid_dir, train_fn, task.schema) for cell in cells]
    if not all(_is_rank_zero(r) for r in records):
        return records  # not rank 0 under DDP
    columns = list(spec.columns) + ["steps", "status"]
    rows = table_rows(cells, records, columns)
    write_table(grid_dir, "results", columns, rows)
    table = rows_markdown(columns, rows)
    print(table)
    print(f"table: {grid_dir / 'results.md'} (+ .csv, .json)")
    figures = {}
    if spec.figure is not None:
        title = spec.title(grid, cells) if spec.title else f"{grid.name}: {len(cells)} cells"
        figure = spec.figure(rows, title)
        print(f"figure: {write_figure(grid_dir / f'{spec.figure_name}.png', figure)}")
        figures[f"sweep/{spec.figure_name}"] = figure
    texts = {"sweep/results": table}
    if spec.report is not None:
        extra = spec.report(grid, cells, records, rows, grid_dir) or {}
        figures.update(extra.get("figures", {}))
        texts.update(extra.get("texts", {}))
    mirror_to_tensorboard(grid_dir / "summary", figures, texts)
    print(f"TensorBoard: tensorboard --logdir {grid.output_dir}")
    failed = [r["cell"] for r in records if r["status"] == "failed"]
    if failed:
        print(f"[sweep] {len(failed)} failed cells: {', '.join(failed)}")
    return records
