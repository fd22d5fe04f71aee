"""Tables (Markdown, CSV, JSON) and figures (PNG) of runs, evaluations and sweeps.

Every file is written atomically (temporary file, then rename), and tables and figures can
be mirrored into TensorBoard, so a result is in the run folder and on the dashboard alike.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .atomic import atomic_write_bytes, atomic_write_text


def format_value(value) -> str:
    """Floats to 4 decimals, None as an empty cell, the rest as they print."""
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def headed_cell(heading: str, text: str) -> str:
    """A table cell for TensorBoard's text dashboard: a bold heading line (scores, a label)
    over the text. That dashboard breaks words at any letter in narrow table columns (its CSS
    has word-break: break-word), so short values ride in the wide text columns instead of
    columns of their own, and no header or number is cut mid-word."""
    return f"<strong>{heading}</strong><br>{text}"


def rows_markdown(columns: list[str], rows: list[dict]) -> str:
    """Dict rows as a Markdown table over `columns` (floats to 4 decimals)."""
    return markdown_table(columns, [[format_value(r.get(c)) for c in columns] for r in rows])


def write_json(path: str | Path, obj) -> Path:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    return Path(path)


def write_table(folder: str | Path, stem: str, columns: list[str], rows: list[dict], markdown: str | None = None,
                json_rows: bool = True) -> Path:
    """<stem>.md (the rows over `columns`, or the given `markdown`), <stem>.csv (every key of
    the rows, `columns` first) and, with `json_rows`, <stem>.json (the rows as a list)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / f"{stem}.md", (markdown if markdown is not None else rows_markdown(columns, rows)).rstrip("\n") + "\n")
    fields = list(columns) + sorted({k for r in rows for k in r} - set(columns))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / f"{stem}.csv", buffer.getvalue())
    if json_rows:
        write_json(folder / f"{stem}.json", rows)
    return folder


def new_figure(width: float = 6, height: float = 4):
    """A matplotlib (figure, axis) that renders without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=120)


def finish_figure(figure, axis, xlabel: str, ylabel: str, title: str, legend_size: float | None = None):
    """Labels, title, a light grid and the legend: the finish every figure of a report shares."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=legend_size)
    figure.tight_layout()
    return figure


def write_figure(path: str | Path, figure) -> Path:
    """The figure as a PNG, atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def mirror_to_tensorboard(log_dir: str | Path, figures: dict | None = None, texts: dict | None = None, step: int = 0,
                          scalars: dict | None = None) -> None:
    """Figures ({tag: matplotlib figure}), Markdown texts ({tag: str}) and series of scalars
    ({tag: [(step, value), ...]}) into TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for tag, series in (scalars or {}).items():
            for x, value in series:
                writer.add_scalar(tag, value, global_step=x)
        for tag, figure in (figures or {}).items():
            writer.add_figure(tag, figure, global_step=step)
        for tag, text in (texts or {}).items():
            writer.add_text(tag, text, global_step=step)
