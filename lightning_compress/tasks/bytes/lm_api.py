"""Lossless compression with a pretrained causal LM: token-level arithmetic coding.

    from lightning_compress.tasks.bytes.lm_api import LmCompressor
    lm = LmCompressor.load("embedded")            # or a hub id, a model directory, a .gguf file
    blob, stats = lm.compress(data)               # any bytes, not only text
    assert lm.decompress(blob) == data

The input is spelt as token ids (`tokens.ByteExactTokenizer`: exact for every input), cut
into windows of `window` tokens, and the windows are coded side by side, `batch` at a time,
each from a fresh context that starts with one start token: the LM's next-token distribution
drives constriction's range coder (24-bit precision, every token at least 1 of 2**24). The
coded size is the LM's cross-entropy of the text plus well under 1% (measured in
docs/BENCHMARKS.md). Files are written to a temporary name and renamed, only after the
decoded data has passed its sha256 check.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from ...atomic import atomic_write_bytes
from ...backbone import EMBEDDED, Backbone, load_backbone
from ...llama_step import supports
from .coder import (CODER_PRECISION, arithmetic_probe, decode_sequences, encode_sequences, lean_stepper, max_symbols,
                    threads, transformers_stepper)
from .container import ContainerError, check_probe, checksum_mismatch, model_hash, undecodable
from .lm_container import identity as lm_identity, pack, unpack
from .tokens import ByteExactTokenizer

DEFAULT_WINDOW = 1024
DEFAULT_BATCH = 16
STEPPERS = {"lean-llama": lean_stepper, "transformers": transformers_stepper}


def _start_token(backbone: Backbone) -> int:
    """The context every window starts from: the document separator <|endoftext|> where the
    vocabulary has one (what pretraining put between documents), else the model's BOS or EOS."""
    tokenizer = backbone.tokenizer
    vocabulary = tokenizer.get_vocab()
    for name in ("<|endoftext|>", "<|end_of_text|>", "<|begin_of_text|>"):
        if name in vocabulary:
            return int(vocabulary[name])
    for token_id in (backbone.decoder.config.bos_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError(f"{backbone.source}: no BOS, EOS or <|endoftext|> token to start a window from")


class LmCompressor:
    """A pretrained causal LM as a lossless compressor (see the module docstring)."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone
        self.model = backbone.decoder
        self.tokens = ByteExactTokenizer(backbone.tokenizer)
        self.vocab = self.model.config.vocab_size
        if len(self.tokens) > self.vocab:
            raise ValueError(f"{backbone.source}: the tokenizer has {len(self.tokens)} ids, the model scores {self.vocab}")
        self.stepper = "lean-llama" if supports(self.model) else "transformers"
        self.model_identity = model_hash(self.model)
        self.identity = lm_identity(self.model_identity, self.tokens.identity)
        self.start_token = _start_token(backbone)
        self.max_window = getattr(self.model.config, "max_position_embeddings", None) or (1 << 20)
        self.dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        self.device = next(self.model.parameters()).device

    @classmethod
    def load(cls, source: str = EMBEDDED, dtype: str = "float32", device: str | None = None) -> "LmCompressor":
        """The LM of `source` as a compressor; the last two loaded are kept (a process that
        codes many files loads, and hashes, each model once)."""
        return _load(source, dtype, device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def _new_stepper(self, kind: str):
        return STEPPERS[kind](self.model, vocab=self.vocab)

    def compress(self, data: bytes, window: int = DEFAULT_WINDOW, batch: int = DEFAULT_BATCH,
                 progress: bool = False) -> tuple[bytes, dict]:
        """(compressed file bytes, stats: sizes, the LM's cross-entropy bound, tokens, seconds)."""
        if not 1 <= window <= self.max_window:
            raise ValueError(f"window={window} tokens: must be between 1 and the model's context ({self.max_window})")
        if not 1 <= batch <= 0xFFFF:
            raise ValueError(f"batch={batch}: must be between 1 and 65535")
        start = time.perf_counter()
        ids, escaped = self.tokens.encode(data)
        windows = [ids[i : i + window] for i in range(0, len(ids), window)]
        new_stepper = self._new_stepper(self.stepper)
        words, bound_bits = encode_sequences(new_stepper, windows, batch, self.start_token,
                                             pre_quantise=False, progress=progress, unit="tok")
        header = {
            "stepper": self.stepper, "dtype": self.dtype, "device": self.device.type, "identity": self.identity,
            "length": len(data), "tokens": len(ids), "window": window,
            "batch": batch, "threads": torch.get_num_threads(), "start_token": self.start_token,
            "sha256": hashlib.sha256(data).hexdigest()[:16], "source": self.backbone.source,
            "probe": arithmetic_probe(new_stepper, [len(w) for w in windows], batch, self.vocab),
        }
        blob = pack(header, escaped, words)
        stats = {"raw_bytes": len(data), "compressed_bytes": len(blob), "payload_bytes": 4 * len(words),
                 "bound_bytes": bound_bits / 8, "tokens": len(ids), "escaped_bytes": len(escaped),
                 "byte_spelt": self.tokens.fallback_bytes, "seconds": time.perf_counter() - start}
        return blob, stats

    def check_header(self, header: dict, words: int, source: str) -> None:
        """Refuse a file this LM cannot decode, before any model work."""
        for field, mine in (("dtype", self.dtype), ("device", self.device.type)):
            if header[field] != mine:
                raise ContainerError(f"{source} was compressed with the LM in {header[field]}; decompress with "
                                     f"{field} {header[field]} too (the arithmetic must repeat exactly), not {mine}")
        # (before the identity, which hashes the weights as loaded: another dtype changes it too)
        if header["identity"] != self.identity:
            raise ContainerError(f"{source} was compressed with LM {header['source']!r} (weights and tokens "
                                 f"{header['identity']}), not with this one ({self.backbone.source!r}: {self.identity}): "
                                 "decompress with the same model")
        if header["stepper"] == "lean-llama" and not supports(self.model):
            raise ContainerError(f"{source} was coded with the lean Llama step, which this model does not support")
        if header["window"] > self.max_window:
            raise ContainerError(f"{source}: header field window={header['window']} exceeds the model's context "
                                 f"({self.max_window}); the file is damaged")
        if not 0 <= header["start_token"] < self.vocab:
            raise ContainerError(f"{source}: header field start_token={header['start_token']} is not an id of this "
                                 f"model's {self.vocab}-token vocabulary; the file is damaged")
        capacity = max_symbols(words, self.vocab, CODER_PRECISION)
        if header["tokens"] > capacity:
            raise ContainerError(f"{source}: the header claims {header['tokens']:,} tokens, more than its {4 * words:,}-byte "
                                 f"payload can hold (at most {capacity:,}); the file is damaged")

    def decompress(self, blob: bytes, progress: bool = False, source: str = "input") -> bytes:
        header, escaped, words = unpack(blob, source)
        self.check_header(header, len(words), source)
        count, window = header["tokens"], header["window"]
        lengths = [min(window, count - i) for i in range(0, count, window)]
        new_stepper = self._new_stepper(header["stepper"])
        with threads(header["threads"]), undecodable(source):
            check_probe(source, header["probe"],
                        lambda: arithmetic_probe(new_stepper, lengths, header["batch"], self.vocab))
            windows = decode_sequences(new_stepper, words, lengths, header["batch"],
                                       header["start_token"], pre_quantise=False, progress=progress, unit="tok")
            data = self.tokens.decode(np.concatenate(windows) if windows else np.zeros(0, np.int64), escaped)
        if len(data) != header["length"] or hashlib.sha256(data).hexdigest()[:16] != header["sha256"]:
            raise checksum_mismatch(source)
        return data

    def compress_file(self, source: str | os.PathLike, target: str | os.PathLike, window: int = DEFAULT_WINDOW,
                      batch: int = DEFAULT_BATCH, progress: bool = True) -> dict:
        blob, stats = self.compress(Path(source).read_bytes(), window, batch, progress)
        atomic_write_bytes(target, blob)
        return stats

    def decompress_file(self, source: str | os.PathLike, target: str | os.PathLike, progress: bool = True) -> int:
        data = self.decompress(Path(source).read_bytes(), progress, str(source))
        atomic_write_bytes(target, data)
        return len(data)


@functools.lru_cache(maxsize=2)
def _load(source: str, dtype: str, device: str) -> LmCompressor:
    backbone = load_backbone(source, dtype)
    backbone.decoder.to(device)
    return LmCompressor(backbone)


def recorded_model(blob: bytes, source: str = "input") -> tuple[str, str]:
    """(model source, weight dtype) a token-coder file names: what to load to decompress it."""
    header = unpack(blob, source)[0]
    return header["source"], header["dtype"]
