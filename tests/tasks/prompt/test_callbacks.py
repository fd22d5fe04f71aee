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
    rows = table.splitlines()[2:]
    assert len(rows) == 10
    assert [r.split("|")[1].strip() for r in rows] == ["lerp"] * 5 + ["slerp"] * 5
    # The ends of the path regenerate the two prompts' own memories.
    ends = module.regenerate(ids)
    assert rows[0].split("|")[3].strip() == ends[0].strip().replace("|", "\\|").replace("\n", " ")
    assert rows[4].split("|")[3].strip() == ends[1].strip().replace("|", "\\|").replace("\n", " ")
