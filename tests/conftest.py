"""Shared fixtures: a tiny random Llama with the embedded tokenizer (built once per session),
and tiny configs made by loading the real experiment files and shrinking them. The sample
data beside the checkout is `helpers.SHARED_DATA` (tests mark themselves `needs_shared_data`)."""

from __future__ import annotations

import copy

import pytest
import torch

from lightning_compress.backbone import load_backbone
from lightning_compress.config import load_config

from helpers import EXPERIMENTS

# What makes the CPU default run (experiments/prompt/aoc.yaml) small enough for a unit test.
SHRINK_PROMPT = [
    "decoder.source=tiny-random", "data.n_tokens=12", "data.batch_size=4", "data.val_size=4", "model.memory_tokens=3",
    "model.encoder.lora.r=4", "eval.num_samples=4", "eval.batch_size=4", "trainer.max_steps=2",
    "trainer.val_check_interval=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="session")
def tiny_backbone_session():
    return load_backbone("tiny-random")


@pytest.fixture
def tiny_backbone(tiny_backbone_session):
    """A fresh copy per test, so no test can leak state into another through the decoder."""
    backbone = copy.copy(tiny_backbone_session)
    backbone.decoder = copy.deepcopy(tiny_backbone_session.decoder)
    return backbone


@pytest.fixture
def tiny_config():
    """experiments/prompt/aoc.yaml shrunk to a tiny random decoder, plus the test's overrides."""

    def make(*overrides: str):
        return load_config(EXPERIMENTS / "prompt" / "aoc.yaml", SHRINK_PROMPT + list(overrides))

    return make


@pytest.fixture
def sample_ids(tiny_backbone_session):
    text = "Attention is all you need for compressing prompts into a few memory slots of a frozen decoder."
    ids = tiny_backbone_session.tokenizer(text, add_special_tokens=False)["input_ids"][:12]
    return torch.tensor([ids])
