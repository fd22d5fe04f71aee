"""Any bytes as token ids of a byte-level BPE tokenizer, and back, exactly.

A tokenizer's decode(encode(x)) is not always x: invalid UTF-8 cannot even be handed to it as
text, special-token strings ("<|endoftext|>") become one control token, and decoding may
normalise or clean up spaces. So the token coder never asks the tokenizer to decode:

- every id maps to the exact bytes it stands for through the byte-level alphabet (GPT-2's
  bytes_to_unicode: each of the 256 byte values is one printable character, and a vocabulary
  entry is a string of those characters); the decoded file is the concatenation of these bytes;
- a byte with a single-byte token can be spelt as that token; a byte without one (SmolLM2's
  vocabulary has none for 10 bytes that never occur in UTF-8 text, e.g. 0xC0, 0xC1, and a few
  control bytes) is written as an ESCAPE id (the first id that spells nothing, a special
  token the tokenizer is never asked to produce), and its value is stored beside the stream,
  one byte each;
- encoding splits the input into maximal runs of valid UTF-8 and the bytes between them. A
  valid run is tokenised (special tokens split as ordinary text) and accepted only if its ids
  spell its bytes exactly; a run that does not is retried line by line, and a line that still
  does not, as well as every invalid byte, is spelt byte by byte, which the LM codes like any
  other tokens (at the price of its surprise).

The identity of the mapping (sha256 of every id's bytes) goes into the compressed file: the
decoder needs that table and the LM, not the tokenizer's merge rules.
"""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np

# Lone surrogates U+DC80..U+DCFF are how Python's "surrogateescape" marks bytes that are not UTF-8.
_ESCAPED = re.compile("([\udc80-\udcff]+)")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the others are
    shifted to code points 256 and up."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    characters, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            characters[byte] = chr(byte)
        else:
            characters[byte] = chr(256 + extra)
            extra += 1
    return characters


class ByteExactTokenizer:
    """bytes <-> token ids of a byte-level BPE tokenizer, lossless for every input."""

    def __init__(self, tokenizer):
        backend = getattr(tokenizer, "backend_tokenizer", None)
        spec = json.loads(backend.to_str()) if backend is not None else {}
        kinds = json.dumps([spec.get("pre_tokenizer"), spec.get("decoder")])
        if '"ByteLevel"' not in kinds:
            raise ValueError(f"{type(tokenizer).__name__} ({getattr(tokenizer, 'name_or_path', '?')}) is not a byte-level "
                             "BPE tokenizer: lossless token coding needs one token per byte value (GPT-2, Llama 3, "
                             "SmolLM, Qwen tokenizers are byte-level)")
        if spec.get("normalizer") is not None:
            raise ValueError(f"{getattr(tokenizer, 'name_or_path', '?')}: the tokenizer normalises its input "
                             f"({spec['normalizer'].get('type')}); lossless token coding needs one that does not")
        self.tokenizer = tokenizer
        to_byte = {c: b for b, c in bytes_to_unicode().items()}
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        # None: an id that spells no bytes (special and added tokens, strings outside the alphabet).
        self.token_bytes: list[bytes | None] = []
        for index, piece in enumerate(pieces):
            if index in special or piece is None or any(c not in to_byte for c in piece):
                self.token_bytes.append(None)
            else:
                self.token_bytes.append(bytes(to_byte[c] for c in piece))
        vocabulary = tokenizer.get_vocab()
        alphabet = bytes_to_unicode()
        unspelt = [i for i, spelt in enumerate(self.token_bytes) if spelt is None]
        if not unspelt:
            raise ValueError(f"{getattr(tokenizer, 'name_or_path', '?')}: no special token to mark escaped bytes")
        self.escape_id = unspelt[0]
        # Id of each byte value's single-byte token, or the escape id where there is none.
        self.byte_ids = np.array([vocabulary.get(alphabet[b], self.escape_id) for b in range(256)], dtype=np.int64)
        digest = hashlib.sha256()
        for spelt in self.token_bytes:
            digest.update(b"\x00" if spelt is None else b"\x01" + len(spelt).to_bytes(4, "little") + spelt)
        self.identity = digest.hexdigest()[:16]
        self.fallback_bytes = 0  # bytes of the last `encode` spelt byte by byte (escaped ones included)

    def __len__(self) -> int:
        return len(self.token_bytes)

    def _spells(self, ids: list[int], data: bytes) -> bool:
        spelt = [self.token_bytes[i] if 0 <= i < len(self.token_bytes) else None for i in ids]
        return None not in spelt and b"".join(spelt) == data

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]

    def _spell_bytes(self, raw: bytes, escaped: bytearray) -> list[int]:
        values = np.frombuffer(raw, dtype=np.uint8)
        ids = self.byte_ids[values]
        escaped += values[ids == self.escape_id].tobytes()
        self.fallback_bytes += len(raw)
        return ids.tolist()

    def _valid_run(self, text: str, escaped: bytearray) -> list[int]:
        data = text.encode("utf-8")
        ids = self._text_ids(text)
        if self._spells(ids, data):
            return ids
        out = []
        for line in text.splitlines(keepends=True):
            ids = self._text_ids(line)
            if self._spells(ids, line.encode("utf-8")):
                out += ids
            else:
                out += self._spell_bytes(line.encode("utf-8"), escaped)
        return out

    def encode(self, data: bytes) -> tuple[np.ndarray, bytes]:
        """(token ids, escaped bytes) that `decode` turns back into exactly `data`."""
        self.fallback_bytes = 0
        ids: list[int] = []
        escaped = bytearray()
        for index, part in enumerate(_ESCAPED.split(data.decode("utf-8", errors="surrogateescape"))):
            if not part:
                continue
            if index % 2:  # an escaped run: bytes that are not UTF-8
                ids += self._spell_bytes(part.encode("utf-8", errors="surrogateescape"), escaped)
            else:
                ids += self._valid_run(part, escaped)
        return np.array(ids, dtype=np.int64), bytes(escaped)

    def decode(self, ids, escaped: bytes = b"") -> bytes:
        """The bytes the ids spell, escape ids taking the escaped bytes in order; ValueError on
        an id that spells nothing or a count of escapes that does not match."""
        out, used = [], 0
        for i in np.asarray(ids, dtype=np.int64).tolist():
            if i == self.escape_id:
                if used >= len(escaped):
                    raise ValueError(f"more escape tokens than the {len(escaped)} escaped bytes stored")
                out.append(escaped[used : used + 1])
                used += 1
                continue
            spelt = self.token_bytes[i] if 0 <= i < len(self.token_bytes) else None
            if spelt is None:
                raise ValueError(f"token id {i} spells no bytes in this tokenizer")
            out.append(spelt)
        if used != len(escaped):
            raise ValueError(f"{len(escaped)} escaped bytes stored, {used} escape tokens decoded")
        return b"".join(out)
