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
