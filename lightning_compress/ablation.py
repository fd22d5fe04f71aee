"""`lcompress ablation GRID.yaml`: train and evaluate encoder x (n, m) cells, then one table.

A grid file names a run config every cell starts from, the encoders, the (n, m) pairs and
overrides shared by all cells. Everything is checked before the first cell trains: the
encoder names, the pairs, every cell's full config, and that the data holds enough texts of
n tokens for each n. Each cell is a normal run in <output_dir>/<name>/<encoder>_n<n>_m<m>/,
closed by a `cell.json` that records its config and metrics: a cell whose `cell.json`
matches its current config is reused, not retrained; a cell that raises is recorded as
failed (with its traceback in error.txt) and the grid goes on.
"""

from __future__ import annotations

import csv
import io
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from .atomic import atomic_write_bytes, atomic_write_text
from .callbacks import markdown_table
from .config import ENCODER_NAMES, ConfigError, _check_keys, config_to_dict, load_config

TABLE_COLUMNS = [
    "encoder", "n", "m", "ratio", "bleu", "exact_match", "prefix_match", "rouge_l", "token_accuracy",
    "trainable_params", "steps", "status",
]


@dataclass
class GridConfig:
    # The experiment YAML every cell starts from (relative to the grid file).
    run: str = "aoc.yaml"
    # Grid folder name under output_dir.
    name: str = "ablation"
    output_dir: str = "runs"
    encoders: list = field(default_factory=lambda: list(ENCODER_NAMES))
    # (n, m) pairs: prompt tokens, memory slots.
    pairs: list = field(default_factory=lambda: [[16, 4]])
    # key: value overrides of the run config shared by every cell.
    overrides: dict = field(default_factory=dict)


@dataclass
class Cell:
    encoder: str
    n: int
    m: int
    config: object  # DictConfig

    @property
    def name(self) -> str:
        return f"{self.encoder}_n{self.n}_m{self.m}"


def is_grid_file(path: str | Path) -> bool:
    """A grid file lists `pairs`; an experiment file never has that key."""
    try:
        user = OmegaConf.to_container(OmegaConf.load(path)) or {}
    except Exception:
        return False
    return isinstance(user, dict) and "pairs" in user


def load_grid(path: str | Path, overrides: list[str] | tuple = ()) -> tuple[GridConfig, list[Cell]]:
    """Parse and check a grid file; `overrides` (key=value) apply to every cell's run config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist")
    try:
        user = OmegaConf.to_container(OmegaConf.load(path)) or {}
    except Exception as err:
        raise ConfigError(f"{path}: cannot parse YAML: {err}") from err
    try:
        _check_keys(user, GridConfig, "")
        grid = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(GridConfig), user))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except Exception as err:
        raise ConfigError(f"{path}: invalid value: {err}") from None
    for encoder in grid.encoders:
        if encoder not in ENCODER_NAMES:
            raise ConfigError(f"{path}: encoders: unknown encoder {encoder!r}; expected some of {ENCODER_NAMES}")
    if not grid.encoders or not grid.pairs:
        raise ConfigError(f"{path}: `encoders` and `pairs` must each list at least one entry")
    for pair in grid.pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, int) and v >= 1 for v in pair)):
            raise ConfigError(f"{path}: pairs: {pair!r} is not an [n, m] pair of positive integers")
        if pair[1] > pair[0]:
            raise ConfigError(f"{path}: pairs: m={pair[1]} > n={pair[0]} would expand, not compress, the prompt")
    # `output_dir=` on the command line moves the whole grid; `name` is the grid's own.
    for item in overrides:
        if item.startswith("output_dir="):
            grid.output_dir = item.split("=", 1)[1]
        elif item.startswith("name="):
            raise ConfigError("name= would rename every cell alike; set the grid's `name` in the grid file")
    overrides = [o for o in overrides if not o.startswith("output_dir=")]
    shared = [f"{k}={_override_value(v)}" for k, v in _flatten(grid.overrides).items()] + list(overrides)
    cells = []
    for encoder in grid.encoders:
        for n, m in grid.pairs:
            cell = Cell(encoder, n, m, None)
            cell_overrides = shared + [
                f"model.encoder.name={encoder}", f"data.n_tokens={n}", f"model.memory_tokens={m}",
                f"name={grid.name}/{cell.name}", f"output_dir={grid.output_dir}",
            ]
            try:
                cell.config = load_config(path.parent / grid.run, cell_overrides)
            except ConfigError as err:
                raise ConfigError(f"{path}: cell {cell.name}: {err}") from None
            cells.append(cell)
    return grid, cells


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _override_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_data_supply(cells: list[Cell]) -> None:
    """Refuse an n the data cannot supply, before anything trains: the splits must hold the
    validation and test prompts the config asks for, and training at least one batch."""
    from data_modules.arxiv_abstracts import probe_supply
    from data_modules.records import resolve_local

    from .backbone import load_tokenizer

    seen = {}
    for cell in cells:
        cfg = cell.config
        resolve_local(cfg.data.source)
        key = (cfg.decoder.source, cfg.data.source, cfg.data.text_field, cfg.data.n_tokens, cfg.data.val_per_mille, cfg.data.test_per_mille)
        if key not in seen:
            tokenizer = load_tokenizer(cfg.decoder.source)
            seen[key] = probe_supply(cfg.data.source, tokenizer, cfg.data.n_tokens, cfg.data.text_field,
                                     cfg.data.val_per_mille, cfg.data.test_per_mille, cfg.data.hub_split)
        counts = seen[key]
        needs = {"train": cfg.data.batch_size, "val": min(cfg.data.val_size, 1), "test": 1}
        if counts["complete"]:
            needs["val"] = cfg.data.val_size
            needs["test"] = cfg.eval.num_samples if cfg.eval.split == "test" else 1
        short = [f"{split}: {counts[split]} < {need}" for split, need in needs.items() if counts[split] < need]
        if short:
            scope = "the whole source" if counts["complete"] else f"the first {counts['records']} records"
            raise ConfigError(
                f"cell {cell.name}: data.source={cfg.data.source!r} cannot supply prompts of n={cfg.data.n_tokens} "
                f"tokens: texts with at least n tokens in {scope} per split: {'; '.join(short)} "
                f"(needed: data.batch_size for train, data.val_size for val, eval.num_samples for test)"
            )


def _cell_record(cell: Cell, status: str, metrics: dict | None = None, error: str | None = None, run_dir=None) -> dict:
    return {
        "cell": cell.name, "encoder": cell.encoder, "n": cell.n, "m": cell.m, "status": status,
        "steps": cell.config.trainer.get("max_steps"), "metrics": metrics or {}, "error": error,
        "run_dir": run_dir, "config": config_to_dict(cell.config),
    }


def _finished(cell_dir: Path, cell: Cell) -> dict | None:
    marker = cell_dir / "cell.json"
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("status") == "ok" and _same_run(record.get("config") or {}, config_to_dict(cell.config)):
        return record
    return None


# Keys that do not change what a finished cell computed.
_NOT_COMPARED = ("resume", "data.num_workers")


def _same_run(stored: dict, current: dict) -> bool:
    """Equal configs, where a key the stored run predates counts as equal if the current run
    leaves it at its default (so a new config key does not invalidate finished cells)."""
    from .config import ExperimentConfig

    stored, current = _flatten(stored), _flatten(current)
    defaults = _flatten(config_to_dict(OmegaConf.structured(ExperimentConfig)))
    for key, value in current.items():
        if key.startswith(_NOT_COMPARED):
            continue
        if key in stored:
            if stored[key] != value:
                return False
        elif key not in defaults or defaults[key] != value:
            return False
    return True


def run_cell(cell: Cell, grid_dir: Path, train_fn) -> dict:
    cell_dir = grid_dir / cell.name
    if (record := _finished(cell_dir, cell)) is not None:
        print(f"[ablation] {cell.name}: finished earlier, reused ({record['run_dir']})")
        return record
    print(f"[ablation] {cell.name}: training {cell.config.trainer.max_steps} steps")
    try:
        result = train_fn(cell.config)
        record = _cell_record(cell, "ok", result.get("metrics"), run_dir=result.get("run_dir"))
    except Exception as err:  # a failed cell must not stop the grid
        cell_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cell_dir / "error.txt", traceback.format_exc())
        print(f"[ablation] {cell.name}: FAILED: {type(err).__name__}: {err} (traceback in {cell_dir / 'error.txt'})")
        record = _cell_record(cell, "failed", error=f"{type(err).__name__}: {err}")
    if result_is_rank_zero(record):
        cell_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cell_dir / "cell.json", json.dumps(record, indent=2) + "\n")
    return record


def result_is_rank_zero(record: dict) -> bool:
    # train() returns {} on ranks other than 0: those ranks write nothing.
    return record["status"] == "failed" or bool(record["metrics"])


def table_rows(records: list[dict]) -> list[dict]:
    rows = []
    for record in records:
        metrics = record["metrics"]
        row = {"encoder": record["encoder"], "n": record["n"], "m": record["m"], "ratio": record["n"] / record["m"],
               "steps": record["steps"], "status": record["status"]}
        for key in ("bleu", "exact_match", "prefix_match", "rouge_l", "token_accuracy", "trainable_params"):
            row[key] = metrics.get(key, "")
        rows.append(row)
    return rows


def write_table(grid_dir: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(grid_dir / "results.csv", buffer.getvalue())
    formatted = [[f"{r[c]:.4f}" if isinstance(r[c], float) else r[c] for c in TABLE_COLUMNS] for r in rows]
    atomic_write_text(grid_dir / "results.md", markdown_table(TABLE_COLUMNS, formatted) + "\n")


def bleu_figure(rows: list[dict], title: str):
    """BLEU vs compression ratio n/m, one line per encoder (failed cells left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for encoder in dict.fromkeys(r["encoder"] for r in rows):
        points = sorted((r["ratio"], r["bleu"]) for r in rows if r["encoder"] == encoder and r["status"] == "ok")
        if points:
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=encoder)
    axis.set_xscale("log", base=2)
    ratios = sorted({r["ratio"] for r in rows})
    axis.set_xticks(ratios, [f"{r:g}" for r in ratios])
    axis.minorticks_off()
    axis.set_xlabel("compression ratio n / m")
    axis.set_ylabel("BLEU-4 (test)")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return figure


def write_figure(grid_dir: Path, rows: list[dict], title: str) -> Path:
    figure = bleu_figure(rows, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    path = grid_dir / "bleu_vs_ratio.png"
    atomic_write_bytes(path, buffer.getvalue())
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(grid_dir / "summary")) as writer:
        writer.add_figure("ablation/bleu_vs_ratio", figure)
        writer.add_text("ablation/results", (grid_dir / "results.md").read_text(encoding="utf-8"))
    return path


def run_grid(path: str | Path, overrides: list[str] | tuple = (), train_fn=None) -> list[dict]:
    grid, cells = load_grid(path, overrides)
    check_data_supply(cells)
    if train_fn is None:
        from .train import train as train_fn
    grid_dir = Path(grid.output_dir) / grid.name
    print(f"[ablation] {len(cells)} cells: {', '.join(c.name for c in cells)}")
    records = [run_cell(cell, grid_dir, train_fn) for cell in cells]
    if not all(result_is_rank_zero(r) for r in records):
        return records  # not rank 0 under DDP
    rows = table_rows(records)
    grid_dir.mkdir(parents=True, exist_ok=True)
    write_table(grid_dir, rows)
    title = f"{grid.name}: {cells[0].config.decoder.source} decoder, {cells[0].config.trainer.max_steps} steps"
    figure = write_figure(grid_dir, rows, title)
    print(markdown_table(TABLE_COLUMNS, [[f"{r[c]:.4f}" if isinstance(r[c], float) else r[c] for c in TABLE_COLUMNS] for r in rows]))
    failed = [r["cell"] for r in records if r["status"] == "failed"]
    print(f"table: {grid_dir / 'results.md'} (+ .csv)\nfigure: {figure}\nTensorBoard: tensorboard --logdir {grid.output_dir}")
    if failed:
        print(f"[ablation] {len(failed)} failed cells: {', '.join(failed)}")
    return records
