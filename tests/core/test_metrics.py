import random

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

from lightning_compress.metrics import (
    corpus_bleu4, exact_match, prefix_match, regeneration_metrics, rouge_l, rouge_l_paper, sentence_bleu4, word_tokens,
)


def test_prefix_match_is_aocs_character_prefix_ratio():
    assert prefix_match("abcdef", "abcxef") == pytest.approx(3 / 6)
    assert prefix_match("abcdef", "abcdef and more") == 1.0
    assert prefix_match("abcdef", "") == 0.0  # AOC's code crashes here
    assert prefix_match("abc", "xbc") == 0.0


def test_prefix_match_compares_one_stripped_line_as_aoc_writes_it():
    # AOC maps newlines to spaces and strips both strings before compute_exact_match.
    assert prefix_match(" Deep nets\nlearn. ", "Deep nets learn.") == 1.0
    assert prefix_match("Deep nets learn.", "  Deep nets earn.") == pytest.approx(10 / 16)


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


def test_paper_rouge_is_pltrdys_and_differs_from_rouge_score():
    assert rouge_l_paper("a b c d", "a b c d") == pytest.approx(1.0)
    assert rouge_l_paper("a b c d", "") == 0.0 and rouge_l_paper("a b", ". .") == 0.0  # pltrdy raises there
    # pltrdy splits at every "." and scores a union LCS over sentences: another number.
    reference = "We train a model. It compresses prompts. The decoder is frozen."
    candidate = "The decoder is frozen. We train a model that compresses prompts."
    assert abs(rouge_l_paper(reference, candidate) - rouge_l(reference, candidate)) > 0.05


def test_bleu_equals_sacrebleu_floor_smoothing_on_the_same_tokens():
    # NLTK method 1 replaces a zero n-gram count by 0.1, as sacreBLEU's `floor` smoothing;
    # on pre-split tokens (tokenize='none') the two agree for candidates of 4+ tokens.
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = random.Random(0)
    words = "the a model memory token prompt decoder frozen compress text".split()
    for _ in range(200):
        ref = [rng.choice(words) for _ in range(rng.randint(4, 30))]
        cand = ref[: rng.randint(0, len(ref))] + [rng.choice(words) for _ in range(rng.randint(0, 10))]
        if len(cand) < 4:
            continue
        nltk_score = sentence_bleu([ref], cand, smoothing_function=SmoothingFunction().method1)
        sacre = sacrebleu.sentence_bleu(" ".join(cand), [" ".join(ref)], tokenize="none",
                                        smooth_method="floor", smooth_value=0.1).score / 100
        assert nltk_score == pytest.approx(sacre, abs=1e-9)
    text = "We study the compression of prompts into memory tokens."
    cand = "We study compression of prompts into soft tokens."
    expected = sacrebleu.sentence_bleu(" ".join(word_tokens(cand)), [" ".join(word_tokens(text))], tokenize="none",
                                       smooth_method="floor", smooth_value=0.1).score / 100
    assert sentence_bleu4(text, cand) == pytest.approx(expected, abs=1e-9)


def test_regeneration_metrics_average_and_check_lengths():
    scores = regeneration_metrics(["a b c", "x y z"], ["a b c", "q"])
    assert scores["exact_match"] == 0.5 and scores["samples"] == 2
    with pytest.raises(ValueError, match="2 references but 1"):
        regeneration_metrics(["a", "b"], ["a"])
