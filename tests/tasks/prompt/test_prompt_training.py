"""The module learns, the decoder never changes, checkpoints hold only what trains."""

import json

import lightning.pytorch as pl
import pytest
import torch

from data_modules.arxiv_abstracts import ArxivAbstractsDataModule
from lightning_compress.checkpoint_io import AtomicCheckpointIO
from lightning_compress.tasks.prompt.module import PromptCompressor
from lightning_compress.tasks.prompt.module import CheckpointMismatch

from lightning_compress.cli import main

from helpers import REPO, overfit_until_exact


def _fit(module, cfg, tmp_path, steps=3):
    datamodule = ArxivAbstractsDataModule.from_config(cfg.data, cfg.eval, module.tokenizer)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1, default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer


@pytest.mark.parametrize("name", ["mlp_free", "lora"])
def test_decoder_frozen_and_encoder_learns(tiny_backbone, tiny_config, tmp_path, name):
    cfg = tiny_config(f"model.encoder.name={name}", "model.lr=1e-2")
    module = PromptCompressor(cfg, tiny_backbone)
    decoder_before = {k: v.clone() for k, v in module.decoder.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in module.trainable_state_dict().items()}
    _fit(module, cfg, tmp_path)
    assert all(p.grad is None and not p.requires_grad for p in module.decoder.parameters())
    for key, value in module.decoder.state_dict().items():
        assert torch.equal(value, decoder_before[key]), f"decoder weight {key} changed"
    changed = [k for k, v in module.trainable_state_dict().items() if not torch.equal(v, encoder_before[k])]
    assert "encoder.memory" in changed and len(changed) >= len(encoder_before) // 2
    assert not module.decoder.training, "decoder left in train mode"


def test_overfit_one_prompt_regenerates_exactly(tiny_backbone, tiny_config, sample_ids):
    cfg = tiny_config("model.encoder.name=mlp_free", "model.memory_tokens=4")
    module = PromptCompressor(cfg, tiny_backbone)
    regenerated, reference, step = overfit_until_exact(module, sample_ids, lr=3e-3, max_steps=400, check_every=20)
    assert regenerated == reference, f"after {step} steps: {regenerated!r} != {reference!r}"


def test_checkpoint_holds_only_trainable_weights_and_reloads(tiny_backbone, tiny_config, tmp_path, sample_ids):
    cfg = tiny_config("model.encoder.name=lora_mlp_free")
    module = PromptCompressor(cfg, tiny_backbone)
    trainer = _fit(module, cfg, tmp_path, steps=2)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    assert not list(tmp_path.glob(".*.tmp-*")), "temporary checkpoint file left behind"
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert set(saved["state_dict"]) == set(module.trainable_state_dict())
    assert not any(k.startswith("decoder.") for k in saved["state_dict"])
    reloaded = PromptCompressor.load_checkpoint(path, backbone=tiny_backbone)
    with torch.no_grad():
        a, b = module.eval().compress(sample_ids), reloaded.compress(sample_ids)
    for x, y in zip(a.keys + a.values, b.keys + b.values):
        assert torch.equal(x, y)


def test_checkpoint_refuses_another_decoder(tiny_backbone, tiny_config, tmp_path):
    cfg = tiny_config()
    module = PromptCompressor(cfg, tiny_backbone)
    trainer = _fit(module, cfg, tmp_path, steps=1)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    with torch.no_grad():
        tiny_backbone.decoder.model.norm.weight.add_(1.0)
    from lightning_compress.backbone import fingerprint

    tiny_backbone.fingerprint = fingerprint(tiny_backbone.decoder)
    with pytest.raises(CheckpointMismatch, match="fingerprint"):
        PromptCompressor.load_checkpoint(path, backbone=tiny_backbone)


def test_prompt_beyond_context_fails_before_training(tiny_backbone, tiny_config):
    with pytest.raises(ValueError, match="context of 1024"):
        PromptCompressor(tiny_config("data.n_tokens=1100"), tiny_backbone)


def test_eval_reads_a_prompt_checkpoint_of_the_previous_release(tiny_backbone, tmp_path, sample_ids):
    # Format 1, written before the task registry (tests/fixtures/README.md).
    legacy = REPO / "tests" / "fixtures" / "legacy_prompt_v1.ckpt"
    module = PromptCompressor.load_checkpoint(legacy, backbone=tiny_backbone)
    assert module.cfg.model.encoder.name == "lora_mlp_free" and module.memory_tokens == 2
    assert module.compress(sample_ids).num_slots == 2
    out = tmp_path / "eval"
    assert main(["eval", str(legacy), "eval.num_samples=2", "eval.batch_size=2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["encoder"], metrics["n"], metrics["m"], metrics["samples"]) == ("lora_mlp_free", 12, 2, 2)
