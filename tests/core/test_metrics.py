import pytest

from lightning_compress.metrics import (
    corpus_bleu4, exact_match, prefix_match, regeneration_metrics, rouge_l, sentence_bleu4, word_tokens,
)


def test_prefix_match_is_aocs_character_prefix_ratio():
    assert prefix_match("abcdef", "abcxef") == pytest.approx(3 / 6)
    assert prefix_match("abcdef", "abcdef and more") == 1.0
    assert prefix_match("abcdef", "") == 0.0  # AOC's code crashes here
    assert prefix_match("abc", "xbc") == 0.0


def test_exact_match_is_strict_after_strip():
    assert exact_match(" The cat. ", "The cat.") == 1.0
    assert exact_match("The cat.", "The cat") == 0.0


def test_bleu():
    text = "We study the compression of prompts into memory tokens for a frozen decoder."
    assert sentence_bleu4(text, text) == pytest.approx(1.0)
    assert sentence_bleu4(text, "") == 0.0
    partial = sentence_bleu4(text, "We study the compression of prompts into soft tokens.")
    assert 0.1 < partial < 0.9
    assert corpus_bleu4([text], [text]) == pytest.approx(1.0)


def test_word_tokens_split_punctuation():
    assert word_tokens("Hello, world. It works!") == ["Hello", ",", "world", ".", "It", "works", "!"]


def test_rouge_l():
    assert rouge_l("a b c d", "a b c d") == 1.0
    assert rouge_l("a b c d", "a b d") == pytest.approx(2 * 1.0 * 0.75 / 1.75)


def test_regeneration_metrics_average_and_check_lengths():
    scores = regeneration_metrics(["a b c", "x y z"], ["a b c", "q"])
    assert scores["exact_match"] == 0.5 and scores["samples"] == 2
    with pytest.raises(ValueError, match="2 references but 1"):
        regeneration_metrics(["a", "b"], ["a"])
