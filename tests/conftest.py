"""Shared fixtures: a tiny random Llama with the embedded tokenizer (built once per session),
and tiny configs made by loading the real experiment files and shrinking them. The sample
data beside the checkout is `helpers.SHARED_DATA` (tests mark themselves `needs_shared_data`)."""

from __future__ import annotations

import copy

import pytest
import torch

from lightning_compress.backbone import load_backbone
from lightning_compress.config import load_config

from helpers import EXPERIMENTS, SHRINK_PROMPT



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
