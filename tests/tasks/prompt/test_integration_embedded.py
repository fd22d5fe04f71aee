"""End to end with the real embedded decoder (SmolLM2-135M-Instruct): slow."""

import json

import pytest
import torch

from lightning_compress.backbone import load_backbone
from lightning_compress.cli import main
from lightning_compress.config import load_config
from lightning_compress.tasks.prompt.module import PromptCompressor

from helpers import EXPERIMENTS, overfit_until_exact

pytestmark = pytest.mark.slow

AOC_YAML = str(EXPERIMENTS / "prompt" / "aoc.yaml")


@pytest.fixture(scope="module")
def embedded():
    return load_backbone("embedded")


def test_overfit_one_prompt_with_the_real_decoder(embedded):
    torch.manual_seed(0)
    module = PromptCompressor(load_config(None, ["data.n_tokens=16", "model.memory_tokens=2"]), embedded)
    text = "We propose a method that compresses long prompts into a handful of memory tokens for frozen language models."
    ids = torch.tensor([embedded.tokenizer(text, add_special_tokens=False).input_ids[:16]])
    out, reference, _ = overfit_until_exact(module, ids, lr=1e-3, max_steps=60, check_every=5)
    assert out == reference


def test_train_checkpoint_reload_and_eval_through_the_cli(tmp_path, capsys):
    code = main([
        "train", AOC_YAML, f"output_dir={tmp_path}", "name=it", "trainer.max_steps=4",
        "trainer.val_check_interval=2", "data.n_tokens=16", "data.val_size=4", "eval.num_samples=4",
        "eval.batch_size=4", "callbacks.num_samples=2",
    ])
    assert code == 0
    run = tmp_path / "it" / "version_0"
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    assert state and not any(k.startswith("decoder.") for k in state)
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    assert metrics["samples"] == 4 and metrics["n"] == 16 and metrics["m"] == 4
    assert len((run / "eval_test" / "regenerations.jsonl").read_text().splitlines()) == 4
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard log"

    # Evaluate the checkpoint on a user's own file, every record of it.
    data = tmp_path / "mine.jsonl"
    text = "Transformers compress prompts into memory tokens, and a frozen decoder regenerates them word for word."
    data.write_text("".join(json.dumps({"abstract": f"{text} Variant {i}."}) + "\n" for i in range(3)))
    capsys.readouterr()
    assert main(["eval", str(best), f"data.source={data}", "eval.split=all", "--out", str(tmp_path / "mine")]) == 0
    assert "| mlp_free | 16 | 4 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "mine" / "metrics.json").read_text())["samples"] == 3
