"""Storage precision of a sentence vector: what is kept, how many bytes, and the vector read back.

float32 / float16 / bfloat16: the vector cast to that dtype (4 / 2 / 2 bytes a value).
int8: symmetric per-vector scale s = max|v| / 127 stored as one float32, q = round(v / s) in
[-127, 127]; read back as q * s, so every value is within s / 2 of the original.
"""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def store(vectors: torch.Tensor, precision: str) -> dict[str, torch.Tensor]:
    """The tensors that would be written for [B, d] vectors at `precision`."""
    if precision in DTYPES:
        return {"values": vectors.detach().to(DTYPES[precision])}
    if precision == "int8":
        scale = (vectors.detach().abs().amax(1, keepdim=True) / 127).clamp_min(1e-12).float()
        return {"values": torch.round(vectors.detach() / scale).clamp(-127, 127).to(torch.int8), "scale": scale}
    raise ValueError(f"precision {precision!r}; expected one of {(*DTYPES, 'int8')}")


def load(stored: dict[str, torch.Tensor]) -> torch.Tensor:
    values = stored["values"].float()
    return values * stored["scale"] if "scale" in stored else values


def bytes_per_vector(stored: dict[str, torch.Tensor]) -> float:
    """The real size of one vector: bytes of every stored tensor, divided by the vectors."""
    rows = stored["values"].shape[0]
    return sum(t.element_size() * t.numel() for t in stored.values()) / rows


def round_trip(vectors: torch.Tensor, precision: str) -> torch.Tensor:
    return load(store(vectors, precision)).to(vectors.dtype)


def fake_quantize(vectors: torch.Tensor, precision: str) -> torch.Tensor:
    """The round trip in the forward pass, the identity in the backward pass (straight-through),
    so training sees the error the stored vector will have."""
    if precision == "float32":
        return vectors
    return vectors + (round_trip(vectors, precision) - vectors).detach()
