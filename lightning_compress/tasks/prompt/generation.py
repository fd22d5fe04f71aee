"""Batched greedy regeneration from memory KV.

Every row starts from [BOS] at position m (after the m memory slots), takes the argmax at
each step, and stops at its first EOS; finished rows keep being fed (shapes stay fixed)
but their outputs are masked, and everything from the first EOS on is cut before
decoding to text. One fresh cache per call: the memory itself is never mutated.
"""

from __future__ import annotations

import torch

from ...hf_compat import forward_cache
from .memory import MemoryKV


@torch.no_grad()
def greedy_regenerate(
    decoder,
    memory: MemoryKV,
    bos_token_id: int,
    eos_token_ids: list[int],
    max_new_tokens: int,
) -> list[list[int]]:
    batch, m = memory.batch_size, memory.num_slots
    device = memory.keys[0].device
    cache = memory.to_cache(decoder.config, dtype=decoder.dtype)
    eos = torch.tensor(sorted(eos_token_ids), device=device)
    tokens = torch.full((batch, 1), bos_token_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    out = torch.zeros(batch, max_new_tokens, dtype=torch.long, device=device)
    lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        position = m + step
        mask = torch.ones(batch, position + 1, dtype=torch.long, device=device)
        logits = decoder(
            input_ids=tokens,
            attention_mask=mask,
            position_ids=torch.full((batch, 1), position, device=device),
            **forward_cache(decoder, cache),
            use_cache=True,
        ).logits[:, -1]
        tokens = logits.argmax(-1, keepdim=True)
        out[:, step] = tokens[:, 0]
        finished_now = torch.isin(tokens[:, 0], eos) & ~done
        lengths[finished_now] = step
        done |= finished_now
        if bool(done.all()):
            break
    return [row[: int(n)].tolist() for row, n in zip(out, lengths)]
