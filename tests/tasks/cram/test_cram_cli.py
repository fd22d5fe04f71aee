"""`lcompress cram`, `cram-decode` and the capacity sweep end to end on the tiny LM saved as a
model directory: results.jsonl, vectors that decode back, refusals, resume, bad input."""

import copy
import json

import pytest

from lightning_compress.cli import main
from lightning_compress.config import ConfigError, load_config

from helpers import EXPERIMENTS

CRAM = str(EXPERIMENTS / "cram" / "cram.yaml")
KEYS = {"text_index", "length", "vectors", "token_accuracy", "exact_greedy", "ce_before_bits", "ce_after_bits",
        "info_gain_bits", "steps", "seconds"}


def _shrink(tiny_lm_dir, word_texts, tmp_path, *more):
    return [f"decoder.source={tiny_lm_dir}", f"data.source={word_texts}", "data.num_texts=3", "cram.length=6",
            "cram.vectors=2", "cram.lr=0.05", "cram.max_steps=300", "cram.batch_size=2", f"output_dir={tmp_path}", *more]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cram_writes_results_and_vectors_that_decode_back(tiny_lm_dir, word_texts, tmp_path, capsys):
    assert main(["cram", CRAM, *_shrink(tiny_lm_dir, word_texts, tmp_path)]) == 0
    run = tmp_path / "cram" / "version_0"
    rows = _lines(run / "results.jsonl")
    assert [r["text_index"] for r in rows] == [0, 1, 2] and all(KEYS <= set(r) for r in rows)
    assert all(r["exact_greedy"] and r["token_accuracy"] == 1.0 and r["info_gain_bits"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "[cram] text 2: 6 tokens, k=2" in out and "exact greedy yes" in out
    assert (run / "gain_vs_ce.png").read_bytes()[:4] == b"\x89PNG" and "| mean |" in (run / "results.md").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    assert {"cram/token_accuracy", "cram/info_gain_bits"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("cram/token_accuracy")) == 3
    assert main(["cram-decode", str(run / "vectors.pt")]) == 0
    decoded = capsys.readouterr().out
    assert "3/3 texts regenerated exactly" in decoded and rows[0]["text"] in decoded


def test_cram_decode_refuses_another_model(tiny_lm_dir, word_texts, tmp_path, capsys):
    from cram_tiny_lm import make_lm

    assert main(["cram", CRAM, *_shrink(tiny_lm_dir, word_texts, tmp_path, "data.num_texts=1")]) == 0
    other = tmp_path / "other_lm"
    model, tokenizer = make_lm(seed=1)
    model.save_pretrained(other)
    tokenizer.save_pretrained(other)
    capsys.readouterr()
    assert main(["cram-decode", str(tmp_path / "cram" / "version_0" / "vectors.pt"), "--source", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("lcompress: error:") == 1 and "fingerprint" in err and "only decode with their own model" in err


def test_resume_skips_finished_texts(tiny_lm_dir, word_texts, tmp_path, capsys):
    assert main(["cram", CRAM, *_shrink(tiny_lm_dir, word_texts, tmp_path, "data.num_texts=2")]) == 0
    first = _lines(tmp_path / "cram" / "version_0" / "results.jsonl")
    capsys.readouterr()
    assert main(["cram", CRAM, *_shrink(tiny_lm_dir, word_texts, tmp_path, "data.num_texts=4", "resume=true")]) == 0
    out = capsys.readouterr().out
    assert "resuming: 2 texts done, 2 to go" in out and "[cram] text 0:" not in out
    rows = _lines(tmp_path / "cram" / "version_0" / "results.jsonl")
    assert [r["text_index"] for r in rows] == [0, 1, 2, 3] and rows[:2] == first
    assert not (tmp_path / "cram" / "version_1").exists()
    capsys.readouterr()
    assert main(["cram", CRAM, *_shrink(tiny_lm_dir, word_texts, tmp_path, "data.num_texts=4", "resume=true",
                                        "cram.length=5")]) == 2
    assert "was run with other settings (cram.length=6)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        ("cram.vectors=0", "cram.vectors=0"),
        ("cram.length=1", "cram.length=1: a text needs at least 2 tokens"),
        ("cram.mode=greedy", "cram.mode='greedy'"),
        ("data.num_texts=0", "data.num_texts"),
    ],
)
def test_bad_keys_are_refused_before_anything_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CRAM, [override])


def test_bad_texts_are_reported(tiny_lm_dir, tmp_path, capsys):
    source = tmp_path / "bad.txt"
    source.write_bytes(b"the cat and the dog in the house of the sun\n\xff\xfe not utf8\n\nred\n")
    code = main(["cram", CRAM, *_shrink(tiny_lm_dir, source, tmp_path, "data.num_texts=2")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("lcompress: error:") == 1
    assert "holds only 1 texts" in err and "bad.txt:2: not UTF-8" in err and "1 shorter texts" in err
    assert main(["cram", CRAM, *_shrink(tiny_lm_dir, source, tmp_path, "cram.length=60")]) == 2
    assert "beyond the model's context of 48" in capsys.readouterr().err


def test_train_refuses_a_cram_experiment(capsys):
    assert main(["train", CRAM]) == 2
    assert "use lcompress cram" in capsys.readouterr().err


def test_capacity_sweep_table_and_figures(tiny_lm_dir, word_texts, tmp_path):
    (tmp_path / "grid.yaml").write_text(
        f"kind: sweep\ntask: cram\nrun: {CRAM}\nname: cap\noutput_dir: {tmp_path}\nlengths: [3, 6]\nvectors: [1, 2]\n"
        f"overrides:\n  decoder.source: {tiny_lm_dir}\n  data.source: {word_texts}\n  data.num_texts: 2\n"
        f"  cram.lr: 0.05\n  cram.max_steps: 300\n"
    )
    assert main(["sweep", str(tmp_path / "grid.yaml")]) == 0
    grid = tmp_path / "cap"
    rows = json.loads((grid / "results.json").read_text())
    assert [(r["vectors"], r["length"]) for r in rows] == [(1, 3), (1, 6), (2, 3), (2, 6)]
    capacity = {r["vectors"]: r for r in json.loads((grid / "capacity.json").read_text())}
    assert capacity[2]["exact_length_90"] == 6 and capacity[2]["theoretical_tokens"] == pytest.approx(2 * 128 * 16 / 5.8826, rel=1e-3)
    for name in ("accuracy_vs_length.png", "gain_vs_ce.png"):
        assert (grid / name).read_bytes()[:4] == b"\x89PNG"


def test_a_run_killed_mid_sweep_resumes_without_redoing_texts(tiny_lm_dir, word_texts, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    args = _shrink(tiny_lm_dir, word_texts, tmp_path, "data.num_texts=6", "cram.batch_size=1")
    command = [sys.executable, "-m", "lightning_compress.cli", "cram", CRAM, *args]
    results = tmp_path / "cram" / "version_0" / "results.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 2:
            os.kill(process.pid, signal.SIGKILL)  # as a pre-empted job: no chance to clean up
            break
        time.sleep(0.02)
    process.wait()
    before = _lines(results)  # every line whole
    assert 2 <= len(before) < 6, "the run was not interrupted mid-sweep"
    assert main(["cram", CRAM, *args, "resume=true"]) == 0
    after = _lines(results)
    assert [r["text_index"] for r in after] == list(range(6)) and after[: len(before)] == before


@pytest.mark.slow
def test_two_processes_share_the_texts_and_rank0_merges(tiny_lm_dir, word_texts, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).parent / "torchrun"
    args = _shrink(tiny_lm_dir, word_texts, tmp_path, "data.num_texts=5")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lightning_compress.cli", "cram",
                          CRAM, *args], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "cram"
    assert [p.name for p in folder.iterdir()] == ["version_0"], "the ranks wrote to different run folders"
    shares = [[r["text_index"] for r in _lines(folder / "version_0" / f"results.rank{k}.jsonl")] for k in (0, 1)]
    assert shares == [[0, 2, 4], [1, 3]]
    merged = _lines(folder / "version_0" / "results.jsonl")
    assert [r["text_index"] for r in merged] == [0, 1, 2, 3, 4] and all(r["exact_greedy"] for r in merged)
    assert run.stdout.count("texts shared by 2 processes") == 1


def test_bos_auto_gives_what_the_tokenizer_adds(tiny_lm):
    from tokenizers.processors import TemplateProcessing

    from lightning_compress.tasks.cram.run import given_bos

    tokenizer = tiny_lm[1]
    assert given_bos("auto", tokenizer) is None  # adds no BOS: the text's first token is given
    assert given_bos(True, tokenizer) == 1 and given_bos(False, tokenizer) is None
    adding = copy.deepcopy(tokenizer)
    adding._tokenizer.post_processor = TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 1)])
    assert adding("the")["input_ids"][0] == 1 and given_bos("auto", adding) == 1
