"""`make cram-capacity`: the cram task's sweep, lengths x number of vectors.

    lcompress sweep experiments/cram/capacity.yaml

Each cell crams the same texts at one (length, k). Besides the per-cell table the sweep
writes capacity.{md,csv,json}: per k, the longest length crammed EXACTLY (free greedy
generation) for at least 90% of the texts, the paper's criterion (longest length whose
mean teacher-forced accuracy is >= 0.99), the theoretical capacity d x 16 bits / log2 V in
tokens, the mean gain in tokens at the longest exact length and its share of the
theoretical capacity (utilisation); and gain_vs_ce.png over every text of every cell.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ...config import ConfigError
from ...reports import finish_figure, new_figure, rows_markdown, write_figure, write_table
from ...sweep import SweepConfig, SweepSpec
from ...task import lazy
from .config import TASK

COLUMNS = ["vectors", "length", "texts", "token_accuracy", "exact_greedy", "greedy_prefix", "ce_before_bits",
           "info_gain_bits", "gain_tokens", "steps", "seconds"]
CAPACITY_COLUMNS = ["vectors", "exact_length_90", "paper_length_099", "theoretical_tokens", "gain_tokens",
                    "utilisation", "tokens_per_vector_exact"]
EXACT_SHARE = 0.9
PAPER_ACCURACY = 0.99


@dataclass
class CapacityGridConfig(SweepConfig):
    task: str = TASK
    run: str = "cram.yaml"
    name: str = "cram_capacity"
    # Tokens per text, one cell per length and k.
    lengths: list = field(default_factory=lambda: [16, 32, 64])
    # Numbers of memory vectors k.
    vectors: list = field(default_factory=lambda: [1, 2, 4])


def cells(grid: CapacityGridConfig, where: str) -> list[tuple[str, dict, list[str]]]:
    for key in ("lengths", "vectors"):
        values = getattr(grid, key)
        if not values or not all(isinstance(v, int) and v >= (2 if key == "lengths" else 1) for v in values):
            raise ConfigError(f"{where}: {key}: {values!r}; expected a list of integers >= {2 if key == 'lengths' else 1}")
    return [(f"k{k}_len{n}", {"vectors": k, "length": n}, [f"cram.length={n}", f"cram.vectors={k}"])
            for k in grid.vectors for n in sorted(grid.lengths)]


def capacity_rows(rows: list[dict]) -> list[dict]:
    out = []
    for k in sorted({r["vectors"] for r in rows}):
        mine = sorted((r for r in rows if r["vectors"] == k and r["status"] == "ok"), key=lambda r: r["length"])
        exact = [r for r in mine if float(r["exact_greedy"]) >= EXACT_SHARE]
        paper = [r for r in mine if float(r["token_accuracy"]) >= PAPER_ACCURACY]
        best = exact[-1] if exact else None
        theoretical = None
        if mine and mine[0].get("hidden_size"):
            theoretical = mine[0]["hidden_size"] * 16 / math.log2(mine[0]["vocab_size"]) * k
        gain = float(best["gain_tokens"]) if best else None
        out.append({
            "vectors": k, "exact_length_90": best["length"] if best else 0,
            "paper_length_099": paper[-1]["length"] if paper else 0,
            "theoretical_tokens": theoretical, "gain_tokens": gain,
            "utilisation": gain / theoretical if gain is not None and theoretical else None,
            "tokens_per_vector_exact": (best["length"] / k) if best else 0,
        })
    return out


def accuracy_figure(rows: list[dict], title: str):
    """Exact-greedy share and teacher-forced accuracy vs length, one colour per k."""
    figure, axis = new_figure(7, 4)
    for k in sorted({r["vectors"] for r in rows}):
        mine = sorted((r for r in rows if r["vectors"] == k and r["status"] == "ok"), key=lambda r: r["length"])
        if not mine:
            continue
        lengths = [r["length"] for r in mine]
        line, = axis.plot(lengths, [float(r["exact_greedy"]) for r in mine], marker="o", label=f"k={k}: exact greedy")
        axis.plot(lengths, [float(r["token_accuracy"]) for r in mine], marker="x", ls="--", color=line.get_color(),
                  label=f"k={k}: teacher-forced accuracy")
    axis.axhline(EXACT_SHARE, color="grey", lw=0.7, ls=":")
    axis.set_xscale("log", base=2)
    axis.set_ylim(-0.02, 1.02)
    return finish_figure(figure, axis, "text length (tokens)", "share of texts exact / mean accuracy", title, legend_size=7)


def report(grid, cells, records, rows, grid_dir: Path) -> dict:
    from .run import gain_figure

    for row, record in zip(rows, records):
        row.update({k: record["metrics"].get(k) for k in ("hidden_size", "vocab_size")})
    capacity = capacity_rows(rows)
    write_table(grid_dir, "capacity", CAPACITY_COLUMNS, capacity)
    table = rows_markdown(CAPACITY_COLUMNS, capacity)
    print(table)
    texts = []
    for record in records:
        path = Path(record["run_dir"] or "") / "results.jsonl"
        if record["status"] == "ok" and path.is_file():
            texts += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    figure = gain_figure(texts, f"{grid.name}: every text of every cell") if texts else None
    if figure is not None:
        print(f"figure: {write_figure(grid_dir / 'gain_vs_ce.png', figure)}")
    return {"figures": {"cram/gain_vs_ce": figure} if figure else {}, "texts": {"cram/capacity": table}}


CAPACITY = SweepSpec(
    schema=CapacityGridConfig, cells=cells, columns=COLUMNS, figure=accuracy_figure, figure_name="accuracy_vs_length",
    title=lambda grid, cells: f"{grid.name}: {cells[0].config.decoder.source}, {cells[0].config.data.num_texts} texts",
    run=lazy(f"{__package__}.run", "run_cram"), report=report,
)
