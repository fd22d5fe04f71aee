"""What `lcompress train --help`, `lcompress config` and a mistyped key tell a user."""

from __future__ import annotations

import pytest
import yaml

from helpers import EXPERIMENTS
from lightning_compress.cli import main
from lightning_compress.config_help import field_comments, key_help
from lightning_compress.task import all_tasks


@pytest.mark.parametrize("task", [t.name for t in all_tasks()])
def test_every_key_of_every_task_has_a_comment(task):
    schema = next(t.schema for t in all_tasks() if t.name == task)
    undocumented = [h.key for h in key_help(schema) if not h.group and not h.comment]
    assert not undocumented


def test_train_help_lists_the_keys_with_types_defaults_and_comments(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: lcompress train" in out and "trainer.fast_dev_run=true" in out
    assert "  data.n_tokens  (int, default 32)" in out
    assert "n: every prompt is exactly this many tokens" in out


def test_train_help_of_a_config_lists_its_tasks_keys(capsys):
    assert main(["train", str(EXPERIMENTS / "bytes" / "bytes.yaml"), "--help"]) == 0
    out = capsys.readouterr().out
    assert "keys of a `bytes` experiment file" in out and "data.chunk_bytes  (int, default 2048)" in out


def test_train_without_arguments_prints_usage_and_the_keys(capsys):
    assert main(["train"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: lcompress train") and "data.n_tokens" in out


def test_print_config_shows_the_resolved_values_with_comments_and_trains_nothing(tmp_path, capsys):
    assert main(["train", str(EXPERIMENTS / "prompt" / "aoc.yaml"), "data.n_tokens=24", f"output_dir={tmp_path}",
                 "--print-config"]) == 0
    out = capsys.readouterr().out
    assert not any(tmp_path.iterdir())
    resolved = yaml.safe_load(out)
    assert resolved["data"]["n_tokens"] == 24 and resolved["model"]["lr"] == 1.0e-3
    assert resolved["trainer"]["max_steps"] == 400
    assert "  # n: every prompt is exactly this many tokens (the ratio is n / m). [int]\n  n_tokens: 24\n" in out


def test_config_command_prints_a_tasks_defaults_and_keys(capsys):
    assert main(["config", "--task", "sentence"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["task"] == "sentence"
    assert main(["config", "--keys", "--task", "cram"]) == 0
    assert "cram.lr  (float, default 0.01)" in capsys.readouterr().out


@pytest.mark.parametrize("override, suggestion", [
    ("n_tokens=8", "did you mean `data.n_tokens`?"),
    ("data.n_tokns=8", "did you mean `data.n_tokens`?"),
    ("model.encoder.nme=full", "did you mean `model.encoder.name`?"),
    ("trainer.max_step=4", "did you mean `trainer.max_steps`?"),
])
def test_an_unknown_key_names_the_closest_valid_one(override, suggestion, capsys):
    assert main(["train", str(EXPERIMENTS / "prompt" / "aoc.yaml"), override]) == 2
    err = capsys.readouterr().err
    assert suggestion in err and len(err.strip().splitlines()) == 1


def test_comments_are_read_from_the_schema_source():
    from lightning_compress.config import TrainedExperiment

    comments = field_comments(TrainedExperiment)
    assert comments["seed"].startswith("Seed of initialisation") and "last.ckpt" in comments["checkpoint_every_n_steps"]
