"""MemoryKV: the compressed prompt, as per-layer keys and values for m memory slots.

Shapes: `keys[l]` and `values[l]` are [batch, num_key_value_heads, m, head_dim] for decoder
layer l. Keys are post-RoPE, as a decoder's own cache holds them: with the
position-consistent layout the slot keys sit at positions 0..m-1, so the decoder's text
continues at positions m, m+1, ... exactly as if the memory were a real prefix.

A transformers `DynamicCache` is mutated in place by every forward, so `to_cache()` builds a
new one each time; never keep a cache across loss, generation or interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import DynamicCache

from ...atomic import atomic_torch_save
from ...hf_compat import forward_cache


@dataclass
class MemoryKV:
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def num_slots(self) -> int:
        return self.keys[0].shape[2]

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def to_cache(self, config, dtype: torch.dtype | None = None) -> DynamicCache:
        dtype = dtype or self.keys[0].dtype
        pairs = [(k.to(dtype), v.to(dtype)) for k, v in zip(self.keys, self.values)]
        return DynamicCache(ddp_cache_data=pairs, config=config)

    def detach(self) -> "MemoryKV":
        return MemoryKV([k.detach() for k in self.keys], [v.detach() for v in self.values])

    def select(self, rows) -> "MemoryKV":
        return MemoryKV([k[rows] for k in self.keys], [v[rows] for v in self.values])

    def lerp(self, other: "MemoryKV", t: float) -> "MemoryKV":
        return MemoryKV(
            [torch.lerp(a, b, t) for a, b in zip(self.keys, other.keys)],
            [torch.lerp(a, b, t) for a, b in zip(self.values, other.values)],
        )

    def slerp(self, other: "MemoryKV", t: float) -> "MemoryKV":
        """Spherical interpolation of each slot's key and value vectors (per layer, head,
        slot): the direction rotates along the great circle while the norm is interpolated
        linearly, so the midpoint is not shrunk as with lerp between distant vectors."""
        return MemoryKV(
            [_slerp(a, b, t) for a, b in zip(self.keys, other.keys)],
            [_slerp(a, b, t) for a, b in zip(self.values, other.values)],
        )

    def save(self, path: str | Path) -> None:
        atomic_torch_save({"keys": [k.detach().cpu() for k in self.keys], "values": [v.detach().cpu() for v in self.values]}, path)

    @classmethod
    def load(cls, path: str | Path) -> "MemoryKV":
        data = torch.load(path, map_location="cpu", weights_only=True)
        return cls(data["keys"], data["values"])


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    a32, b32 = a.float(), b.float()
    na, nb = a32.norm(dim=-1, keepdim=True), b32.norm(dim=-1, keepdim=True)
    ua, ub = a32 / na.clamp_min(eps), b32 / nb.clamp_min(eps)
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps))
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so
    # Nearly parallel vectors: slerp degenerates to lerp.
    direction = torch.where(so < 1e-4, torch.lerp(ua, ub, t), direction)
    return (direction * torch.lerp(na, nb, t)).to(a.dtype)


def decoder_logits(decoder, memory: MemoryKV, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits of the frozen decoder over `input_ids` [B, T], conditioned on the memory.

    The text sits at positions m..m+T-1 and attends to all m slots: the attention mask
    is m + T long, the position ids are explicit (omitting them silently shifts RoPE).
    """
    m, (batch, length) = memory.num_slots, input_ids.shape
    cache = memory.to_cache(decoder.config, dtype=decoder.dtype)
    attention_mask = torch.ones(batch, m + length, dtype=torch.long, device=input_ids.device)
    position_ids = torch.arange(m, m + length, device=input_ids.device).expand(batch, -1)
    out = decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        **forward_cache(decoder, cache),
        use_cache=True,
    )
    return out.logits
