"""The sentence task's sweep: layers x width x storage precision, one trained run per cell.

    lcompress sweep experiments/sentence/grid.yaml

Every cell trains with its precision (quantization-aware when `quantization_aware` is set in
the run file or the grid's overrides) and reports the test metrics of its vector; the table
and an accuracy-vs-bytes figure (one line per layer count) are written to the grid folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import ConfigError
from ...reports import finish_figure, new_figure
from ...sweep import SweepConfig, SweepSpec
from .config import MAX_LAYERS, PRECISIONS, TASK

COLUMNS = ["layers", "width", "precision", "token_accuracy", "exact_match", "bleu", "bytes_per_vector",
           "utf8_bytes_per_sentence", "parameters"]


@dataclass
class SentenceGridConfig(SweepConfig):
    task: str = TASK
    run: str = "sentence_ae.yaml"
    name: str = "sentence_grid"
    layers: list = field(default_factory=lambda: [1, 2, 3])
    widths: list = field(default_factory=lambda: [256, 512, 768, 1024])
    precisions: list = field(default_factory=lambda: ["float32", "int8"])


def cells(grid: SentenceGridConfig, where: str) -> list[tuple[str, dict, list[str]]]:
    if not grid.layers or not all(isinstance(n, int) and 1 <= n <= MAX_LAYERS for n in grid.layers):
        raise ConfigError(f"{where}: layers: {grid.layers!r}; expected integers in 1..{MAX_LAYERS}")
    if not grid.widths or not all(isinstance(w, int) and w >= 8 for w in grid.widths):
        raise ConfigError(f"{where}: widths: {grid.widths!r}; expected integers >= 8")
    if not grid.precisions or any(p not in PRECISIONS for p in grid.precisions):
        raise ConfigError(f"{where}: precisions: {grid.precisions!r}; expected a subset of {list(PRECISIONS)}")
    return [(f"l{n}_w{w}_{p}", {"layers": n, "width": w, "precision": p},
             [f"model.layers={n}", f"model.width={w}", f"model.precision={p}", f"eval.precisions=[{p}]"])
            for n in grid.layers for w in grid.widths for p in grid.precisions]


def accuracy_figure(rows: list[dict], title: str):
    figure, axis = new_figure(7, 4)
    for layers in sorted({r["layers"] for r in rows}):
        mine = sorted((r for r in rows if r["layers"] == layers and r.get("status") == "ok"),
                      key=lambda r: float(r["bytes_per_vector"]))
        if mine:
            axis.plot([float(r["bytes_per_vector"]) for r in mine], [float(r["token_accuracy"]) for r in mine],
                      marker="o", label=f"{layers} layer(s)")
    axis.set_xscale("log", base=2)
    axis.set_ylim(-0.02, 1.02)
    return finish_figure(figure, axis, "bytes per vector", "token accuracy (greedy, test)", title)


GRID = SweepSpec(schema=SentenceGridConfig, cells=cells, columns=COLUMNS, figure=accuracy_figure,
                 figure_name="accuracy_vs_bytes", title=lambda grid, cells: f"{grid.name}: {len(cells)} cells")
