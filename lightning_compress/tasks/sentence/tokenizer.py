"""The sentence task's tokenizer: any transformers tokenizer (the embedded SmolLM2 one by
default) or plain UTF-8 bytes. Only ids < vocab come out; EOS and PAD are the model's own."""

from __future__ import annotations

from functools import lru_cache

BYTES = "bytes"


class SentenceTokenizer:
    def __init__(self, source: str = "embedded"):
        self.source = source
        self._hf = None
        if source != BYTES:
            from ...backbone import load_tokenizer

            self._hf = load_tokenizer(source)
        self.vocab = 256 if self._hf is None else len(self._hf)

    def encode(self, text: str) -> list[int]:
        if self._hf is None:
            return list(text.encode("utf-8"))
        return self._hf(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        if self._hf is None:
            return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
        return self._hf.decode([i for i in ids if i < self.vocab])


@lru_cache(maxsize=4)
def sentence_tokenizer(source: str) -> SentenceTokenizer:
    return SentenceTokenizer(source)


class SeenVocabulary:
    """A tokenizer narrowed to the tokens seen in training: compact ids 0..len(kept)-1 in the
    order of `kept` (the tokenizer's ids), then UNK for every other token. The model's head then
    scores ~20k tokens instead of SmolLM2's 49k, and its embedding shrinks alike."""

    def __init__(self, tokenizer: SentenceTokenizer, kept: list[int]):
        self.tokenizer, self.kept = tokenizer, list(kept)
        self.unk = len(self.kept)
        self.vocab = self.unk + 1
        self._compact: dict[int, int] | None = None

    def encode(self, text: str) -> list[int]:
        if self._compact is None:
            self._compact = {token: i for i, token in enumerate(self.kept)}
        return [self._compact.get(token, self.unk) for token in self.tokenizer.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([self.kept[i] for i in ids if i < self.unk])


def seen_tokens(sentences_ids) -> tuple[list[int], int]:
    """(sorted ids of the tokens in the tokenised sentences, how many sentences were read)."""
    seen: set[int] = set()
    count = 0
    for count, ids in enumerate(sentences_ids, 1):
        seen.update(ids)
    return sorted(seen), count
