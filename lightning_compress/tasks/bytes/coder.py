"""Arithmetic (range) coding of byte chunks with a ByteLM's next-byte probabilities.

Bit-identical encode and decode. Both sides compute probabilities through one function,
`ChunkStepper.step`, with the same batch of chunks, the same shapes and the same thread
count: one byte position at a time, with a KV cache, for every chunk of the batch at once.
(Encoding could score a chunk in one teacher-forced pass, but a different kernel would give
logits that differ in the last bits, and one flipped quantised frequency breaks decoding.)

Probabilities are quantised to integer frequencies that sum to 2**FREQ_BITS with every byte
at least 1 (so any byte stays decodable, whatever the model thinks of it), and handed to
constriction's range coder, whose 24-bit fixed point represents them exactly (2**20 divides
2**24). The stream is step-major inside a batch of chunks (byte t of every chunk, then byte
t + 1), which is the order the decoder recovers them in; batches follow one another. One
stream for the whole input keeps the coder's overhead to a few bytes in total.
"""

from __future__ import annotations

import numpy as np
import torch
import constriction
from tqdm.auto import tqdm
from transformers import StaticCache

from ...hf_compat import forward_cache
from .model import BOS

# constriction is a compiled extension: its submodules are attributes, not importable paths.
Categorical = constriction.stream.model.Categorical
RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder

FREQ_BITS = 20
TOTAL = 1 << FREQ_BITS


def quantise(probabilities: np.ndarray) -> np.ndarray:
    """[B, 256] float64 probabilities -> integer frequencies (as float64) >= 1 summing to TOTAL."""
    freq = np.floor(probabilities * (TOTAL - 256)).astype(np.int64) + 1
    rows = np.arange(freq.shape[0])
    freq[rows, probabilities.argmax(axis=1)] += TOTAL - freq.sum(axis=1)
    return freq.astype(np.float64)


class ChunkStepper:
    """Next-byte probabilities for a batch of chunks, one position per call.

    The KV cache is preallocated for the batch's longest chunk (StaticCache): a growing
    cache re-allocates and copies every layer's keys and values at each byte, which made
    coding 3x slower on CPU (mostly page faults)."""

    def __init__(self, model, batch: int, device, length: int):
        self.model, self.device = model, device
        self.cache = StaticCache(config=model.config, max_cache_len=max(1, length))
        self.position = 0
        self.previous = torch.full((batch, 1), BOS, dtype=torch.long, device=device)

    @torch.no_grad()
    def step(self) -> np.ndarray:
        """float64 probabilities [B, 256] of the byte at the current position."""
        positions = torch.full_like(self.previous, self.position)
        slot = torch.tensor([self.position], device=self.device)
        out = self.model(input_ids=self.previous, **forward_cache(self.model, self.cache), position_ids=positions,
                         cache_position=slot, use_cache=True)
        logits = out.logits[:, -1, :256].double()
        return torch.softmax(logits, dim=-1).cpu().numpy()

    def advance(self, current: np.ndarray) -> None:
        self.previous = torch.as_tensor(current, dtype=torch.long, device=self.device).view(-1, 1)
        self.position += 1


def _batches(lengths: list[int], batch: int):
    for start in range(0, len(lengths), batch):
        yield start, lengths[start : start + batch]


def encode_chunks(model, chunks: list[bytes], batch: int, device="cpu", progress: bool = True) -> tuple[np.ndarray, float]:
    """Range-code `chunks`; returns (compressed uint32 words, model cross-entropy in bits)."""
    family = Categorical(perfect=False)
    encoder = RangeEncoder()
    bound = 0.0
    lengths = [len(c) for c in chunks]
    with tqdm(total=sum(lengths), unit="B", unit_scale=True, desc="compress", disable=not progress) as bar:
        for start, group in _batches(lengths, batch):
            width = max(group)
            table = np.zeros((len(group), width), dtype=np.int32)
            for row, chunk in enumerate(chunks[start : start + len(group)]):
                table[row, : len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            active_rows = np.array(group)
            stepper = ChunkStepper(model, len(group), device, width)
            for t in range(width):
                probabilities = stepper.step()
                active = active_rows > t
                symbols = table[active, t]
                frequencies = quantise(probabilities[active])
                encoder.encode(symbols, family, frequencies)
                bound -= np.log2(probabilities[active, symbols]).sum()
                stepper.advance(table[:, t])
                bar.update(int(active.sum()))
    return encoder.get_compressed(), float(bound)


def decode_chunks(model, words: np.ndarray, lengths: list[int], batch: int, device="cpu", progress: bool = True) -> list[bytes]:
    """Inverse of `encode_chunks`, given the chunk lengths and the same batch size."""
    family = Categorical(perfect=False)
    decoder = RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))
    chunks = []
    with tqdm(total=sum(lengths), unit="B", unit_scale=True, desc="decompress", disable=not progress) as bar:
        for _, group in _batches(lengths, batch):
            width = max(group)
            table = np.zeros((len(group), width), dtype=np.int32)
            active_rows = np.array(group)
            stepper = ChunkStepper(model, len(group), device, width)
            for t in range(width):
                probabilities = stepper.step()
                active = active_rows > t
                frequencies = quantise(probabilities[active])
                table[active, t] = decoder.decode(family, frequencies)
                stepper.advance(table[:, t])
                bar.update(int(active.sum()))
            chunks.extend(table[row, :length].astype(np.uint8).tobytes() for row, length in enumerate(group))
    return chunks
