"""Fixtures of the cram tests: the tiny steerable LM (cram_tiny_lm.py), also saved as a model
directory so that `decoder.source=<dir>` loads it through the same code as any hub model,
and a plain text file of word texts."""

from __future__ import annotations

import pytest
import torch

from cram_tiny_lm import WORDS, make_lm


@pytest.fixture(scope="session")
def tiny_lm():
    return make_lm()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_lm")
    model, tokenizer = make_lm()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def word_texts(tmp_path_factory):
    """A plain text file of 6 lines of 10 words (one text per line)."""
    generator = torch.Generator().manual_seed(3)
    lines = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (10,), generator=generator).tolist()) for _ in range(6)]
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("\n".join(lines) + "\n")
    return path
