import torch

from lightning_compress.reports import markdown_table
from lightning_compress.tasks.prompt.callbacks import LatentInterpolation
from lightning_compress.tasks.prompt.module import PromptCompressor


def test_markdown_table_escapes_pipes_and_newlines():
    table = markdown_table(["a", "b"], [["x|y", "line\nbreak"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | line break |"]


def test_interpolation_table_has_both_methods_at_every_point(tiny_backbone, tiny_config):
    module = PromptCompressor(tiny_config(), tiny_backbone).eval()
    ids = torch.randint(100, 5000, (2, 12))
    table = LatentInterpolation(points=5).table(module, ids)
    prompts, path = table.split("\n\n")
    # Both endpoint prompts are shown above the path.
    first, second = module.decode(ids.tolist())
    assert prompts.splitlines()[2:] == [f"| {first} | {second} |"]
    rows = [[cell.strip() for cell in row.split(" | ")] for row in path.splitlines()[2:]]
    assert path.splitlines()[0] == "| lerp | slerp |" and len(rows) == 5
    ts = ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert [r[0].lstrip("| ").split("</strong>")[0] for r in rows] == [f"<strong>t = {t}" for t in ts]
    # The ends of the path regenerate the two prompts' own memories, by both methods.
    ends = [e.strip().replace("|", "\\|").replace("\n", " ") for e in module.regenerate(ids)]
    text = lambda cell: cell.split("<br>", 1)[1].rstrip(" |").strip()  # noqa: E731
    assert text(rows[0][0]) == text(rows[0][1]) == ends[0]
    assert text(rows[4][0]) == text(rows[4][1]) == ends[1]
