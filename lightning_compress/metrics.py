"""Regeneration metrics, with the papers' definitions (see README "Metrics").

- `bleu`: sentence-level BLEU-4 of NLTK with smoothing method 1, averaged over samples, on
  NLTK word tokens: what 500xCompressor and AOC report. Words come from NLTK's Treebank
  word tokenizer over sentences split by an *untrained* Punkt model, because the trained
  `punkt_tab` data is a separate download; the only difference from `word_tokenize` is at
  abbreviations such as "e.g.", so scores can differ from the papers' in the third digit.
- `corpus_bleu`: NLTK corpus BLEU-4 (method 1) over the same tokens.
- `exact_match`: 1 if the stripped strings are equal, else 0 (500xCompressor's EM).
- `prefix_match`: AOC's "exact match": characters of the reference before the first
  mismatch, divided by the reference length (0 for empty output; AOC's code crashes there).
- `rouge_l`: ROUGE-L F1 (rouge-score package, no stemming).
- `token_accuracy`: teacher-forced next-token argmax accuracy over the n prompt tokens + EOS,
  computed in the module (the cramming paper's accuracy).
"""

from __future__ import annotations

from functools import lru_cache

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu


@lru_cache(maxsize=1)
def _tokenizers():
    return PunktSentenceTokenizer(), NLTKWordTokenizer()


def word_tokens(text: str) -> list[str]:
    sentences, words = _tokenizers()
    return [w for s in sentences.tokenize(text) for w in words.tokenize(s)]


def sentence_bleu4(reference: str, candidate: str) -> float:
    ref, cand = word_tokens(reference), word_tokens(candidate)
    if not cand or not ref:
        return 0.0
    return float(sentence_bleu([ref], cand, smoothing_function=SmoothingFunction().method1))


def corpus_bleu4(references: list[str], candidates: list[str]) -> float:
    refs = [[word_tokens(r)] for r in references]
    cands = [word_tokens(c) for c in candidates]
    if not any(cands):
        return 0.0
    return float(corpus_bleu(refs, cands, smoothing_function=SmoothingFunction().method1))


def exact_match(reference: str, candidate: str) -> float:
    return float(reference.strip() == candidate.strip())


def prefix_match(reference: str, candidate: str) -> float:
    if not reference:
        return float(not candidate)
    matched = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        matched += 1
    return matched / len(reference)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(reference: str, candidate: str) -> float:
    return float(_rouge().score(reference, candidate)["rougeL"].fmeasure)


def regeneration_metrics(references: list[str], candidates: list[str]) -> dict[str, float]:
    """Mean of every per-sample metric plus corpus BLEU, over aligned lists."""
    if len(references) != len(candidates):
        raise ValueError(f"{len(references)} references but {len(candidates)} candidates")
    if not references:
        raise ValueError("no samples to score")
    count = len(references)
    totals = {"bleu": 0.0, "exact_match": 0.0, "prefix_match": 0.0, "rouge_l": 0.0}
    for ref, cand in zip(references, candidates):
        totals["bleu"] += sentence_bleu4(ref, cand)
        totals["exact_match"] += exact_match(ref, cand)
        totals["prefix_match"] += prefix_match(ref, cand)
        totals["rouge_l"] += rouge_l(ref, cand)
    result = {key: value / count for key, value in totals.items()}
    result["corpus_bleu"] = corpus_bleu4(references, candidates)
    result["samples"] = count
    return result
