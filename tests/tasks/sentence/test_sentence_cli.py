"""The sentence task through the CLI on a tiny byte-level model: train, final test files, eval."""

import json

import pytest

from lightning_compress.cli import main
from lightning_compress.config import ConfigError, load_config

from helpers import EXPERIMENTS

CONFIG = EXPERIMENTS / "sentence" / "sentence_ae.yaml"
TINY = ["data.tokenizer=bytes", "data.min_tokens=8", "data.max_tokens=48", "data.batch_size=8", "data.val_size=8",
        "data.test_size=8", "data.val_per_mille=150", "data.test_per_mille=150", "data.shuffle_buffer=8",
        "model.width=32", "model.heads=4", "model.warmup_steps=1", "eval.precisions=[float32,int8]",
        "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "trainer.accelerator=cpu"]


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    path = tmp_path_factory.mktemp("sentences") / "s.txt"
    words = "the a model vector small tiny text data learn keeps sentence one two three".split()
    lines = [f"Line {i} keeps {words[i % len(words)]} and {words[(i * 5) % len(words)]}." for i in range(120)]
    path.write_text("\n".join(lines) + "\nnot valid: \n")
    return path


def test_train_then_eval(tmp_path, sentences, capsys):
    assert main(["train", str(CONFIG), *TINY, f"data.source={sentences}", f"output_dir={tmp_path}"]) == 0
    run = tmp_path / "sentence_ae" / "version_0"
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    for key in ("token_accuracy", "exact_match", "bytes_per_vector", "utf8_bytes_per_sentence", "bleu",
                "gzip_bytes_per_sentence", "zstd_bytes_per_sentence", "share_of_bert_base", "share_of_gpt2_small"):
        assert key in metrics
    assert metrics["bytes_per_vector"] == 32 * 4 and 0 <= metrics["token_accuracy"] <= 1
    assert [r["precision"] for r in metrics["by_precision"]] == ["float32", "int8"]
    assert (run / "eval_test" / "accuracy_vs_length.png").is_file() and (run / "eval_test" / "interpolation.md").is_file()
    out = tmp_path / "eval_all"
    assert main(["eval", str(run / "checkpoints" / "best.ckpt"), f"data.source={sentences}", "eval.split=all",
                 "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["sentences"] > 8
    assert "token_accuracy" in capsys.readouterr().out
    # Without --out: a new folder named by checkpoint and step; the run's eval_test/ is kept.
    best = run / "checkpoints" / "best.ckpt"
    assert metrics["checkpoint"] == str(best.resolve()) and metrics["step"] >= 1
    before = (run / "eval_test" / "metrics.json").read_bytes()
    for _ in range(2):
        assert main(["eval", str(best), f"data.source={sentences}"]) == 0
    step = metrics["step"]
    assert sorted(p.name for p in (run / "eval").iterdir()) == [f"best-step{step}", f"best-step{step}-2"]
    assert json.loads((run / "eval" / f"best-step{step}" / "metrics.json").read_text())["step"] == step
    assert (run / "eval_test" / "metrics.json").read_bytes() == before


def test_a_seen_vocabulary_is_scanned_saved_and_used_by_eval(tmp_path, sentences, capsys):
    """model.vocabulary=seen: the head covers the training sentences' tokens + UNK; eval reads the
    kept ids back from the checkpoint and maps text the same way."""
    assert main(["train", str(CONFIG), *TINY, f"data.source={sentences}", f"output_dir={tmp_path}",
                 "model.vocabulary=seen", "trainer.max_steps=2"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "sentence_ae" / "version_0"
    from lightning_compress.checkpoint_io import load_checkpoint
    state = load_checkpoint(run / "checkpoints" / "best.ckpt").state_dict
    kept = state["net.kept_tokens"].tolist()
    seen = sorted({b for line in sentences.read_text().splitlines() for b in line.encode()})
    assert kept == sorted(kept) and set(kept) <= set(seen) and len(kept) >= 20
    assert state["net.embed.weight"].shape[0] == len(kept) + 3  # + UNK, EOS, PAD
    assert f"{len(kept)} of the tokenizer's 256 ids occur in" in out
    # Text the scan never saw: an unseen byte becomes UNK and can never be regenerated.
    odd = tmp_path / "odd.txt"
    odd.write_text("Line 7 keeps Zürich and the vector ~~ quietly.\n" * 3)
    assert main(["eval", str(run / "checkpoints" / "best.ckpt"), f"data.source={odd}", "eval.split=all",
                 "--out", str(tmp_path / "odd")]) == 0
    metrics = json.loads((tmp_path / "odd" / "metrics.json").read_text())
    assert metrics["sentences"] == 1 and metrics["token_accuracy"] < 1


@pytest.mark.parametrize("override, message", [
    ("model.layers=0", "model.layers"), ("model.layers=13", "model.layers"), ("model.width=30", "width"),
    ("model.pooling=max", "pooling"), ("model.precision=int4", "precision"), ("data.min_tokens=40", "min_tokens"),
    ("model.conditioning=all", "conditioning"), ("model.vocabulary=trimmed", "vocabulary"),
    ("model.vocabulary_scan=-1", "vocabulary_scan"),
])
def test_out_of_range_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG, [override])
