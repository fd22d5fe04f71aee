"""Arithmetic (range) coding of symbol sequences with a language model's next-symbol probabilities.

One loop codes both kinds of sequence this task knows: byte chunks under a ByteLM (symbols
0..255) and token windows under a pretrained LM (symbols = token ids). Encode and decode are
bit-identical because both compute probabilities through the same stepper, with the same
batch of sequences, the same shapes and the same thread count: one position at a time, with
a KV cache, for every sequence of the batch at once. (Encoding could score a sequence in one
teacher-forced pass, but a different kernel gives logits that differ in the last bits, and
one changed quantised frequency breaks decoding.)

Precision. constriction's range coder represents each distribution with 24-bit integer
frequencies, every symbol at least 1 of 2**24 (so any symbol stays decodable, whatever the
model thinks of it). Byte probabilities are first quantised by us to 2**20 (`quantise`), which
the 24-bit coder represents exactly as the format-1 files did; token distributions (49k symbols)
are handed over as float64 and quantised by constriction to 24 bits directly: 16 bits would
reserve 49k/65k of the mass for the floor of 1.

The stream is step-major inside a batch (symbol t of every sequence, then t + 1), the order
the decoder recovers them in; batches follow one another. One stream for the whole input keeps
the coder's overhead to a few bytes in total.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from typing import Callable, Protocol

import numpy as np
import torch
import constriction
from tqdm.auto import tqdm
from transformers import StaticCache

from ...hf_compat import forward_cache
from ...llama_step import LlamaStepper, LlamaWeights

# constriction is a compiled extension: its submodules are attributes, not importable paths.
Categorical = constriction.stream.model.Categorical
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder

CODER_PRECISION = 24  # constriction's default range coder
FREQ_BITS = 20
TOTAL = 1 << FREQ_BITS


def quantise(probabilities: torch.Tensor) -> torch.Tensor:
    """[B, 256] float64 probabilities -> integer frequencies (as float64) >= 1 summing to TOTAL.

    floor(p * (TOTAL - 256)) + 1 per symbol, the remainder added to the likeliest symbol (the
    first of equal ones). Computed by torch where the probabilities are, so on a GPU only the
    frequencies travel to the host. Every value is an integer below 2**28, which float64 holds
    exactly, so multiply, floor and sum are exact IEEE operations and argmax returns the first
    maximum on every device: the same integers as the numpy code that wrote formats 1-3, and
    faster than it on the host too (0.14 vs 0.18 ms for 256 rows, 2.3 vs 4.0 ms for 4096)."""
    freq = torch.floor(probabilities * (TOTAL - 256)).add_(1)
    freq.scatter_add_(1, probabilities.argmax(dim=1, keepdim=True), TOTAL - freq.sum(dim=1, keepdim=True))
    return freq


def max_symbols(payload_words: int, vocab: int, precision: int) -> int:
    """The most symbols a payload of this many words can hold: every symbol costs at least
    -log2(1 - (vocab - 1) / 2**precision) bits, the cost of the likeliest symbol when all the
    others sit at the floor of 1; plus the coder's 64-bit state. A header claiming more
    is refused before any model work."""
    least_bits = -math.log2(1 - (vocab - 1) / 2**precision)
    return int((32 * payload_words + 64) / least_bits) + 1


@contextmanager
def threads(count: int):
    """torch's intra-op threads set to `count` inside (a matmul split over another number of
    threads can round differently: decoding repeats the encoder's thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Stepper(Protocol):
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B] at the current position -> float64 probabilities [B, V] of the next, on
        the model's device."""


class LeanStepper:
    """`LlamaStepper` (the lean incremental forward), as float64 probabilities. `model` may be
    a `LlamaWeights`, fused once for all the steppers of a file (`lean_stepper`)."""

    def __init__(self, model, batch: int, length: int, vocab: int | None = None):
        self.llama = LlamaStepper(model, batch, length, vocab)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.llama.step(tokens).double(), dim=-1)


class TransformersStepper:
    """The transformers forward on a preallocated StaticCache (a growing cache re-allocates
    every layer's keys and values at each position: 3x slower on CPU). Format-1 byte files
    were coded with it, so it decodes them; it also runs any causal LM the lean step does
    not reproduce."""

    def __init__(self, model, batch: int, length: int, vocab: int | None = None):
        self.model, self.vocab = model, vocab
        self.device = next(model.parameters()).device
        self.cache = StaticCache(config=model.config, max_cache_len=max(1, length))
        self.position = 0

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        previous = tokens.to(self.device).view(-1, 1)
        positions = torch.full_like(previous, self.position)
        slot = torch.tensor([self.position], device=self.device)
        out = self.model(input_ids=previous, **forward_cache(self.model, self.cache), position_ids=positions,
                         cache_position=slot, use_cache=True)
        self.position += 1
        logits = out.logits[:, -1, : self.vocab].double()
        return torch.softmax(logits, dim=-1)


NewStepper = Callable[[int, int], Stepper]  # (batch, longest sequence) -> stepper


def lean_stepper(model, vocab: int | None = None) -> NewStepper:
    """Lean steppers over `model` whose weights are fused once, not once per batch."""
    weights = LlamaWeights(model, vocab)
    return lambda batch, length: LeanStepper(weights, batch, length)


def transformers_stepper(model, vocab: int | None = None) -> NewStepper:
    return lambda batch, length: TransformersStepper(model, batch, length, vocab)


def arithmetic_probe(new_stepper: NewStepper, lengths: list[int], batch: int, vocab: int, steps: int = 4) -> int:
    """A 32-bit fingerprint of how this machine computes the model: sha256 of the probabilities
    of the first `steps` positions of a stepper shaped as the coder's first batch, fed fixed
    symbols. The coder decodes only where every probability repeats bit for bit, which a
    different torch build or set of CPU kernels (AVX2 vs AVX-512 dispatch) can break: the file
    records the encoder's probe, and the decoder compares its own before decoding anything
    (a mismatch refused in milliseconds instead of after a full decode). 0: nothing to probe
    (no sequences); a real probe is never 0."""
    group = lengths[:batch]
    if not group:
        return 0
    stepper = new_stepper(len(group), max(max(group), steps))
    digest = hashlib.sha256()
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        symbols = torch.randint(0, vocab, (len(group),), generator=generator)
        digest.update(np.ascontiguousarray(stepper.step(symbols).cpu().numpy()).tobytes())
    return int.from_bytes(digest.digest()[:4], "little") or 1


def _running(probabilities: torch.Tensor, active: np.ndarray) -> torch.Tensor:
    """The rows of the sequences still running at this position (all of them until the
    shortest of the batch ends)."""
    if active.all():
        return probabilities
    return probabilities[torch.from_numpy(active).to(probabilities.device)]


def _host_model(rows: torch.Tensor, pre_quantise: bool) -> np.ndarray:
    """What constriction is handed: our 2**20 frequencies (quantised on the model's device) or
    the float64 probabilities it quantises itself."""
    return (quantise(rows) if pre_quantise else rows).cpu().numpy()


def _batches(lengths: list[int], batch: int):
    for start in range(0, len(lengths), batch):
        yield start, lengths[start : start + batch]


def encode_sequences(new_stepper: NewStepper, sequences: list[np.ndarray], batch: int, start_token: int,
                     pre_quantise: bool, progress: bool = True, unit: str = "B") -> tuple[np.ndarray, float]:
    """Range-code `sequences` (int arrays); returns (compressed uint32 words, the model's
    cross-entropy of the sequences in bits)."""
    family = Categorical(perfect=False)
    encoder = RangeEncoder()
    bound = 0.0
    lengths = [len(s) for s in sequences]
    with tqdm(total=sum(lengths), unit=unit, unit_scale=True, desc="compress", disable=not progress) as bar:
        for start, group in _batches(lengths, batch):
            width = max(group)
            table = np.zeros((len(group), width), dtype=np.int64)
            for row, sequence in enumerate(sequences[start : start + len(group)]):
                table[row, : len(sequence)] = sequence
            active_rows = np.array(group)
            stepper = new_stepper(len(group), width)
            previous = torch.full((len(group),), start_token, dtype=torch.long)
            for t in range(width):
                active = active_rows > t
                rows = _running(stepper.step(previous), active)
                symbols = table[active, t].astype(np.int32)
                encoder.encode(symbols, family, _host_model(rows, pre_quantise))
                coded = torch.from_numpy(symbols).to(rows.device, torch.int64).unsqueeze(1)
                bound = bound - torch.log2(rows.gather(1, coded)).sum()
                previous = torch.from_numpy(table[:, t])
                bar.update(int(active.sum()))
    return encoder.get_compressed(), float(bound)


def decode_sequences(new_stepper: NewStepper, words: np.ndarray, lengths: list[int], batch: int, start_token: int,
                     pre_quantise: bool, progress: bool = True, unit: str = "B") -> list[np.ndarray]:
    """Inverse of `encode_sequences`, given the sequence lengths and the same batch size."""
    family = Categorical(perfect=False)
    decoder = RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
    sequences = []
    with tqdm(total=sum(lengths), unit=unit, unit_scale=True, desc="decompress", disable=not progress) as bar:
        for _, group in _batches(lengths, batch):
            width = max(group)
            table = np.zeros((len(group), width), dtype=np.int64)
            active_rows = np.array(group)
            stepper = new_stepper(len(group), width)
            previous = torch.full((len(group),), start_token, dtype=torch.long)
            for t in range(width):
                active = active_rows > t
                rows = _running(stepper.step(previous), active)
                table[active, t] = decoder.decode(family, _host_model(rows, pre_quantise))
                previous = torch.from_numpy(table[:, t].copy())
                bar.update(int(active.sum()))
            sequences.extend(table[row, :length].copy() for row, length in enumerate(group))
    return sequences
