"""The ablation grid: checked before training, a failed cell does not stop the rest,
finished cells are reused, and one table + figure come out. Tiny random decoders."""

import csv
import json

import pytest

from lightning_compress.sweep import load_sweep, run_sweep
from lightning_compress.config import ConfigError

from helpers import EXPERIMENTS

# experiments/prompt/aoc.yaml, shrunk: what every cell of the test grids starts from.
TINY_RUN = f"""base: {EXPERIMENTS / "prompt" / "aoc.yaml"}
decoder: {{source: tiny-random}}
data: {{n_tokens: 12, batch_size: 4, val_size: 4}}
model: {{encoder: {{lora: {{r: 4}}}}}}
eval: {{num_samples: 4, batch_size: 4}}
callbacks: {{num_samples: 1, interpolation_points: 0}}
trainer: {{max_steps: 2, val_check_interval: 2, check_val_every_n_epoch: null, accelerator: cpu,
          num_sanity_val_steps: 0, enable_progress_bar: false}}
"""


def _grid(tmp_path, body: str):
    (tmp_path / "tiny.yaml").write_text(TINY_RUN)
    path = tmp_path / "grid.yaml"
    path.write_text(f"# lcompress ablation grid.yaml\nrun: tiny.yaml\nname: grid\noutput_dir: {tmp_path / 'runs'}\n{body}")
    return path


@pytest.mark.parametrize(
    "body, message",
    [
        ("encoders: [mlp_free, lorra]\npairs: [[12, 3]]\n", "unknown encoder 'lorra'"),
        ("encoders: [mlp_free]\npairs: [[12, 30]]\n", "m=30 > n=12"),
        ("encoders: [mlp_free]\npairs: [[12]]\n", r"not an \[n, m\] pair"),
        ("encoders: [mlp_free]\npairs: [[12, 3]]\nsteps: 3\n", "unknown config key `steps`"),
        ("encoders: [mlp_free]\npairs: [[12, 3]]\noverrides: {model.lr: fast}\n", "cell mlp_free_n12_m3"),
    ],
)
def test_bad_grid_fails_before_training(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        run_sweep(_grid(tmp_path, body), train_fn=pytest.fail)


def test_n_the_data_cannot_supply_fails_before_training(tmp_path):
    # The shipped abstracts are a few hundred tokens long: none reaches 4,000.
    path = _grid(tmp_path, "encoders: [mlp_free]\npairs: [[12, 3], [4000, 16]]\n")
    with pytest.raises(ConfigError, match=r"cell mlp_free_n4000_m16: .* cannot supply prompts of n=4000"):
        run_sweep(path, train_fn=pytest.fail)


def test_grid_trains_reports_failures_and_reuses_finished_cells(tmp_path, capsys):
    # The lora cell fails for real: its adapters target a module the decoder does not have.
    path = _grid(tmp_path, "encoders: [mlp_free, lora]\npairs: [[12, 3], [12, 6]]\n")
    records = run_sweep(path, ["model.encoder.lora.target_modules=[no_such_proj]"])
    status = {r["cell"]: r["status"] for r in records}
    assert status == {"mlp_free_n12_m3": "ok", "mlp_free_n12_m6": "ok", "lora_n12_m3": "failed", "lora_n12_m6": "failed"}
    grid_dir = tmp_path / "runs" / "grid"
    assert "no_such_proj" in (grid_dir / "lora_n12_m3" / "error.txt").read_text()
    rows = list(csv.DictReader((grid_dir / "results.csv").open()))
    assert [(r["encoder"], r["n"], r["m"], r["status"]) for r in rows] == [
        ("mlp_free", "12", "3", "ok"), ("mlp_free", "12", "6", "ok"), ("lora", "12", "3", "failed"), ("lora", "12", "6", "failed")
    ]
    ok = rows[0]
    assert float(ok["ratio"]) == 4.0 and int(ok["trainable_params"]) > 0 and 0.0 <= float(ok["bleu"]) <= 1.0
    assert (grid_dir / "results.md").read_text().count("\n") == 6
    assert (grid_dir / "bleu_vs_ratio.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((grid_dir / "summary").glob("events.out.tfevents*")), "figure not logged to TensorBoard"
    # Each run logged its HParams with final metrics.
    run = json.loads((grid_dir / "mlp_free_n12_m3" / "cell.json").read_text())
    assert run["metrics"]["samples"] == 4 and (grid_dir / "mlp_free_n12_m3" / "version_0" / "hparams.yaml").exists()

    capsys.readouterr()
    again = run_sweep(path, ["model.encoder.lora.target_modules=[no_such_proj]"])
    out = capsys.readouterr().out
    assert "mlp_free_n12_m3: finished earlier, reused" in out and "mlp_free_n12_m6: finished earlier, reused" in out
    assert not (grid_dir / "mlp_free_n12_m3" / "version_1").exists(), "a finished cell was trained again"
    assert [r["metrics"] for r in again[:2]] == [r["metrics"] for r in records[:2]]
    # A changed config is a different run: the cell trains again.
    load_sweep(path, ["trainer.max_steps=3"])  # still valid
    third = run_sweep(path, ["trainer.max_steps=3", "model.encoder.lora.target_modules=[no_such_proj]"])
    assert third[0]["steps"] == 3 and (grid_dir / "mlp_free_n12_m3" / "version_1").exists()


def test_grid_files_name_their_kind_and_the_old_form_still_reads(tmp_path):
    old = _grid(tmp_path, "encoders: [mlp_free]\npairs: [[12, 3]]\n")
    new = tmp_path / "new.yaml"
    new.write_text("kind: sweep\ntask: prompt\n" + old.read_text())
    (_, task_old, cells_old), (_, task_new, cells_new) = load_sweep(old), load_sweep(new)
    assert task_old.name == task_new.name == "prompt"
    assert [c.name for c in cells_old] == [c.name for c in cells_new] == ["mlp_free_n12_m3"]
    assert cells_new[0].labels == {"encoder": "mlp_free", "n": 12, "m": 3, "ratio": 4.0}


@pytest.mark.parametrize(
    "text, message",
    [
        ("kind: sweep\ntask: bytes\nrun: tiny.yaml\n", "task 'bytes' has no sweeps"),
        ("kind: sweep\ntask: nope\nrun: tiny.yaml\n", "task='nope'; registered tasks"),
        ("name: just_a_run\n", "is not a grid file"),
        ("kind: sweep\nrun: bytes.yaml\nencoders: [mlp_free]\npairs: [[12, 3]]\n", "is a `bytes` experiment"),
    ],
)
def test_sweep_refuses_what_is_not_a_grid_of_its_task(tmp_path, capsys, text, message):
    from lightning_compress.cli import main

    (tmp_path / "tiny.yaml").write_text(TINY_RUN)
    (tmp_path / "bytes.yaml").write_text("task: bytes\ndata: {text: x.txt}\n")
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        run_sweep(path, train_fn=pytest.fail)
    assert main(["sweep", str(path)]) == 2 and message.split("'")[0] in capsys.readouterr().err


def test_the_paper_grid_starts_on_short_abstracts_because_it_pads_as_the_papers(tmp_path):
    from lightning_compress.tasks.prompt.ablation import check_data_supply

    data = tmp_path / "short.jsonl"
    data.write_text("".join(json.dumps({"abstract": f"Short abstract number {i} on memory tokens."}) + "\n" for i in range(6000)))
    overrides = [f"data.source={data}", "decoder.source=tiny-random", "eval.num_samples=100"]
    _, _, cells = load_sweep(EXPERIMENTS / "prompt" / "lora_ablation_paper.yaml", overrides)
    assert len(cells) == 60 and all(c.config.data.pad_to_n for c in cells)
    check_data_supply(cells)  # n up to 480 from ~10-token abstracts: padded
    _, _, unpadded = load_sweep(EXPERIMENTS / "prompt" / "lora_ablation_paper.yaml", overrides + ["data.pad_to_n=false"])
    with pytest.raises(ConfigError, match="cannot supply prompts of n=96"):
        check_data_supply(unpadded)
