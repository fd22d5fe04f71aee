import pytest

from lightning_compress.cli import main
from lightning_compress.config import ConfigError, load_config

from helpers import EXPERIMENTS as EXPERIMENTS_DIR

AOC = EXPERIMENTS_DIR / "prompt" / "aoc.yaml"


def test_overrides_apply():
    cfg = load_config(AOC, ["data.n_tokens=96", "model.memory_tokens=16", "trainer.max_steps=2000"])
    assert (cfg.data.n_tokens, cfg.model.memory_tokens, cfg.trainer.max_steps) == (96, 16, 2000)


def test_unknown_key_names_the_key_and_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.n_tokenz=3"])
    message = str(err.value)
    assert "data.n_tokenz" in message and "n_tokens" in message and "batch_size" in message


def test_unknown_trainer_key_is_checked_against_lightning():
    with pytest.raises(ConfigError, match="trainer.max_stepz"):
        load_config(None, ["trainer.max_stepz=3"])


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  encoder:\n    nme: full\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*model.encoder.nme"):
        load_config(path)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.encoder.name=big", "model.encoder.name"),
        ("model.position_layout=left", "position_layout"),
        ("data.n_tokens=0", "data.n_tokens"),
        ("data.n_tokens=abc", "n_tokens"),
        ("eval.split=dev", "eval.split"),
    ],
)
def test_bad_values_are_refused(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, [override])


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["data.n_tokens"])


def test_cli_reports_config_errors(capsys):
    assert main(["train", str(AOC), "model.memory_tokenz=4"]) == 2
    assert "model.memory_tokenz" in capsys.readouterr().err


def test_base_files_are_merged_under_the_run(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\ndata:\n  n_tokens: 20\n  batch_size: 3\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nname: b\ndata:\n  n_tokens: 40\n")
    cfg = load_config(tmp_path / "b.yaml")
    assert (cfg.name, cfg.data.n_tokens, cfg.data.batch_size) == ("b", 40, 3)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "b.yaml")


def test_training_needs_max_steps():
    from lightning_compress.runner import trainer_kwargs

    with pytest.raises(ConfigError, match="trainer.max_steps"):
        trainer_kwargs(load_config(None, ["trainer.max_steps=-1"]))
    assert trainer_kwargs(load_config(AOC))["max_steps"] > 0


def test_cli_missing_data_path_fails_before_any_model_loads(tmp_path, capsys):
    code = main(["train", str(AOC), f"data.source={tmp_path}/missing.jsonl", f"output_dir={tmp_path}/runs"])
    assert code == 2
    assert "missing.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
