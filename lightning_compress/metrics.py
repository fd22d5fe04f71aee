"""Regeneration metrics, with the papers' definitions (see README "Metrics").

- `bleu`: sentence-level BLEU-4 of NLTK with smoothing method 1, averaged over samples, on
  NLTK word tokens: what 500xCompressor and AOC report. Words come from NLTK's Treebank
  word tokenizer over sentences split by an *untrained* Punkt model, because the trained
  `punkt_tab` data is a separate download; the only difference from `word_tokenize` is at
  abbreviations such as "e.g.", so scores can differ from the papers' in the third digit.
- `corpus_bleu`: NLTK corpus BLEU-4 (method 1) over the same tokens.
- `exact_match`: 1 if the stripped strings are equal, else 0 (500xCompressor's EM).
- `prefix_match`: AOC's "exact match" (`compute_exact_match`): on both strings with newlines
  mapped to spaces and stripped (as AOC's prediction step writes them), the characters of
  the reference before the first mismatch divided by the reference length (0 for empty
  output; AOC's code crashes there).
- `rouge_l`: ROUGE-L F1 of the rouge-score package (Google's, no stemming): ours.
- `rouge_l_paper`: ROUGE-L F of the `rouge` package (pltrdy 1.0.1), which the papers use: it
  splits sentences at every "." and scores a summary-level LCS, so it differs from
  `rouge_l` by up to ~0.5 on the same pair; compare with the papers in this column only.
- `distinct_outputs`: distinct regenerations / samples (stripped, newlines as spaces): 1.0
  when every prompt gives its own text, low when the encoder collapses to one output for
  many prompts (a failure BLEU averages hide).
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


def one_line(text: str) -> str:
    """A text as AOC's prediction step writes it: newlines as spaces, stripped."""
    return text.replace("\n", " ").strip()


def prefix_match(reference: str, candidate: str) -> float:
    reference, candidate = one_line(reference), one_line(candidate)
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


@lru_cache(maxsize=1)
def _paper_rouge():
    from rouge import Rouge

    return Rouge(metrics=["rouge-l"])


def rouge_l_paper(reference: str, candidate: str) -> float:
    reference, candidate = one_line(reference), one_line(candidate)
    # pltrdy's rouge refuses a text with no words (ValueError "... is empty"): score 0, as
    # an empty regeneration shares nothing with its reference.
    if not any(s.split() for s in candidate.split(".")) or not any(s.split() for s in reference.split(".")):
        return 0.0
    return float(_paper_rouge().get_scores(candidate, reference)[0]["rouge-l"]["f"])


# Per-sample metrics, (reference, candidate) -> float, averaged over samples.
PER_SAMPLE = {"bleu": sentence_bleu4, "exact_match": exact_match, "prefix_match": prefix_match,
              "rouge_l": rouge_l, "rouge_l_paper": rouge_l_paper}


def distinct_rate(candidates: list[str]) -> float:
    if not candidates:
        return 0.0
    return len({one_line(c) for c in candidates}) / len(candidates)


def regeneration_metrics(references: list[str], candidates: list[str]) -> dict[str, float]:
    """Mean of every per-sample metric plus corpus BLEU, over aligned lists."""
    if len(references) != len(candidates):
        raise ValueError(f"{len(references)} references but {len(candidates)} candidates")
    if not references:
        raise ValueError("no samples to score")
    count = len(references)
    totals = {name: 0.0 for name in PER_SAMPLE}
    for ref, cand in zip(references, candidates):
        for name, fn in PER_SAMPLE.items():
            totals[name] += fn(ref, cand)
    result = {key: value / count for key, value in totals.items()}
    result["corpus_bleu"] = corpus_bleu4(references, candidates)
    result["distinct_outputs"] = distinct_rate(candidates)
    result["samples"] = count
    return result
