"""The shared fit sequence (lightning_compress/runner.py), run through the CLI on the
tiny random decoder."""

from __future__ import annotations

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
    assert [e.step for e in events.Scalars("val/loss")] == [2]  # Lightning's step index of step 3
    assert "regeneration/samples/text_summary" in events.Tags()["tensors"]


def test_a_run_ending_on_a_validation_step_validates_once_there(tmp_path):
    overrides = [o for o in SHRINK_PROMPT if not o.startswith(("trainer.max_steps", "trainer.val_check"))]
    code = main(["train", str(EXPERIMENTS / "prompt" / "aoc.yaml"), f"output_dir={tmp_path}", "name=even",
                 *overrides, "trainer.max_steps=4", "trainer.val_check_interval=2"])
    assert code == 0
    events = EventAccumulator(str(tmp_path / "even" / "version_0"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/loss")] == [1, 3]
