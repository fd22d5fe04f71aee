"""The shared fit sequence (lightning_compress/runner.py), run through the CLI on the
tiny random decoder."""

from __future__ import annotations

import json

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import EXPERIMENTS, SHRINK_PROMPT
from lightning_compress.cli import main


def test_a_run_shorter_than_the_validation_interval_still_validates_at_its_last_step(tmp_path):
    # A first smoke test: 3 steps with validation every 50. It must still leave validation
    # scalars, regeneration samples and a best checkpoint.
    overrides = [o for o in SHRINK_PROMPT if not o.startswith(("trainer.max_steps", "trainer.val_check"))]
    code = main(["train", str(EXPERIMENTS / "prompt" / "aoc.yaml"), f"output_dir={tmp_path}", "name=short",
                 *overrides, "trainer.max_steps=3", "trainer.val_check_interval=50"])
    assert code == 0
    run = tmp_path / "short" / "version_0"
    assert (run / "checkpoints" / "best.ckpt").is_file()
    events = EventAccumulator(str(run))
    events.Reload()
    # Before training (step 0) and after the last step (3), not at Lightning's index 2.
    assert [e.step for e in events.Scalars("val/loss")] == [0, 3]
    assert "regeneration/samples/text_summary" in events.Tags()["tensors"]


def test_a_run_ending_on_a_validation_step_validates_once_there(tmp_path):
    overrides = [o for o in SHRINK_PROMPT if not o.startswith(("trainer.max_steps", "trainer.val_check"))]
    code = main(["train", str(EXPERIMENTS / "prompt" / "aoc.yaml"), f"output_dir={tmp_path}", "name=even",
                 *overrides, "trainer.max_steps=4", "trainer.val_check_interval=2"])
    assert code == 0
    events = EventAccumulator(str(tmp_path / "even" / "version_0"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/loss")] == [0, 2, 4]


def test_the_dashboard_shows_train_and_val_at_one_step_numbering_and_the_results_as_final(tmp_path, capsys):
    overrides = [o for o in SHRINK_PROMPT if not o.startswith(("trainer.max_steps", "trainer.val_check"))]
    code = main(["train", str(EXPERIMENTS / "prompt" / "aoc.yaml"), f"output_dir={tmp_path}", "name=dash", *overrides,
                 "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1"])
    assert code == 0
    printed = capsys.readouterr().out
    run = tmp_path / "dash" / "version_0"
    # The run folder and the TensorBoard command come before training starts.
    assert printed.index(f"run folder: {run}") < printed.index("global batch")
    events = EventAccumulator(str(run), size_guidance={"tensors": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    # Only the train and val groups: no epoch chart, no step-0 final/* dots, lr under train/.
    assert {t.split("/")[0] for t in scalars} == {"train", "val"}
    for tag in ("train/lr", "train/grad_norm", "train/tokens_per_s", "val/distinct_outputs", "val/best_step"):
        assert tag in scalars, tag
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    # The text tables carry the same step as the scalars of the same validation.
    assert [e.step for e in events.Tensors("regeneration/samples/text_summary")] == [0, 2, 4]
    assert 0 < events.Scalars("val/distinct_outputs")[-1].value <= 1
    best_step = events.Scalars("val/best_step")[-1].value
    assert best_step in (2, 4)
    summary = events.Tensors("results/summary/text_summary")[-1]
    text = summary.tensor_proto.string_val[0].decode()
    assert summary.step == 4 and f"| best step | {int(best_step)} |" in text and "| bleu |" in text
    assert "val/curves" in events.Tags()["images"]
    assert (run / "validation_curves.png").read_bytes()[:4] == b"\x89PNG"
    # HParams: the defining settings first; metric columns are the validation tags.
    from tensorboard.plugins.hparams import plugin_data_pb2

    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/experiment").plugin_data.content).experiment
    # TensorBoard shows them sorted by name: the defining settings come first, in order.
    names = sorted(h.name for h in experiment.hparam_infos)
    assert [n.strip() for n in names[:6]] == ["encoder", "n", "m", "ratio", "lr", "steps"]
    assert {m.name.tag for m in experiment.metric_infos} >= {"val/loss", "val/bleu", "val/distinct_outputs"}
    # best.ckpt holds weights only; last.ckpt what resume needs.
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert "optimizer_states" not in best and "optimizer_states" in last
    assert (run / "checkpoints" / "best.ckpt").stat().st_size < (run / "checkpoints" / "last.ckpt").stat().st_size / 2
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert metrics["checkpoint"] == str((run / "checkpoints" / "best.ckpt").resolve()) and metrics["step"] == best_step
    assert 0 < metrics["distinct_outputs"] <= 1


def test_hparams_put_the_defining_settings_first_and_keep_integers():
    from omegaconf import OmegaConf

    from lightning_compress.runner import run_hparams

    cfg = OmegaConf.create({"model": {"lr": 0.00001, "tied": True}, "data": {"n_tokens": 16}})
    hparams = run_hparams(cfg, {"n": 16, "steps": 400, "lr": 0.00001})
    assert [k.strip() for k in sorted(hparams)[:3]] == ["n", "steps", "lr"]
    # As TensorBoard would print them: integers as integers, small floats readable.
    assert hparams["data.n_tokens"] == "16" and hparams["model.lr"] == "1e-05" and hparams["model.tied"] is True


def test_the_progress_bar_shows_loss_throughput_and_validation_totals(tmp_path, capsys):
    overrides = [o for o in SHRINK_PROMPT if not o.startswith("trainer.enable_progress_bar")]
    assert main(["train", str(EXPERIMENTS / "prompt" / "aoc.yaml"), f"output_dir={tmp_path}", "name=bar", *overrides,
                 "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false"]) == 0
    out = capsys.readouterr().out.replace("\r", "\n")
    assert "Validation" in out and "0/?" not in out
    last = [line for line in out.splitlines() if line.startswith("Epoch 0") and "2/2" in line][-1]
    assert "loss=" in last and "tokens/s=" in last and "val_loss=" in last and "v_num" not in last
