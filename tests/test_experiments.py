"""Every YAML in experiments/ validates against its task's schema without loading a model,
and documents the command that runs it."""

import pytest

from lightning_compress.cli import main
from lightning_compress.config import load_config
from lightning_compress.sweep import is_sweep_file, load_sweep

from helpers import EXPERIMENTS as EXPERIMENTS_DIR

ALL_YAML = sorted(EXPERIMENTS_DIR.rglob("*.yaml"))
EXPERIMENTS = [p for p in ALL_YAML if not is_sweep_file(p)]
GRIDS = [p for p in ALL_YAML if is_sweep_file(p)]


def test_experiments_exist():
    assert EXPERIMENTS, "experiments/ holds no YAML file"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_validates_without_loading_a_model(path):
    cfg = load_config(path)
    # The file documents how to run it.
    assert "lcompress" in path.read_text() or "make " in path.read_text()
    # Experiments are grouped by task: experiments/<task>/*.yaml.
    assert path.parent.name == cfg.task


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_every_grid_validates_without_loading_a_model(path):
    grid, task, cells = load_sweep(path)
    assert cells and task.sweep is not None and path.parent.name == task.name
    if task.name == "prompt":
        assert len(cells) == len(grid.encoders) * len(grid.pairs)
    assert "kind: sweep" in path.read_text(), "grid files name their kind explicitly"
    assert any(command in path.read_text() for command in ("lcompress sweep", "lcompress ablation", "make "))


def test_cli_check_config(capsys):
    assert main(["check-config", *map(str, EXPERIMENTS)]) == 0
    assert capsys.readouterr().out.count("ok") == len(EXPERIMENTS)
