"""What a crammed text is scored by (the paper's definitions, in bits):

- `token_accuracy`: teacher-forced argmax accuracy over the predicted tokens (first given);
- `exact_greedy`: free greedy generation from the vectors (KV cache, one token at a time)
  reproduces every predicted token; `greedy_prefix`: how many it gets right before the first
  miss. Teacher-forced accuracy of 1.0 implies it up to float rounding; 0.99 says nothing;
- `ce_before_bits` / `ce_after_bits`: sum over the predicted tokens of -log2 p without / with
  the memory (the paper's "CE" is the same sum in nats: mean loss x length);
- `info_gain_bits` = ce_before - ce_after; `gain_tokens` = (accuracy with - accuracy without
  memory) x predicted tokens, the paper's "gain, tokens".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from ...hf_compat import forward_cache

from .optimise import inputs_and_targets, leading_correct, memory_logits


@torch.no_grad()
def greedy_tokens(model, memory: torch.Tensor, first: torch.Tensor, count: int) -> torch.Tensor:
    """Greedy continuation of [memory; embed(first)] for `count` tokens, [B, count]."""
    embeds = torch.cat([memory.to(model.dtype), model.get_input_embeddings()(first)], 1)
    cache = DynamicCache(config=model.config)  # filled in place by every forward
    token = model(inputs_embeds=embeds, use_cache=True, **forward_cache(model, cache)).logits[:, -1].argmax(-1)
    tokens = [token]
    for _ in range(count - 1):
        token = model(input_ids=token[:, None], use_cache=True, **forward_cache(model, cache)).logits[:, -1].argmax(-1)
        tokens.append(token)
    return torch.stack(tokens, 1)


@torch.no_grad()
def _bits_and_accuracy(model, memory, inputs, targets) -> tuple[list[float], list[float], list[int]]:
    logits = memory_logits(model, memory, inputs).float()
    nats = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").sum(1)
    correct = logits.argmax(-1) == targets
    return (nats / math.log(2)).tolist(), correct.float().mean(1).tolist(), leading_correct(correct).tolist()


@torch.no_grad()
def score(model, ids: torch.Tensor, vectors: torch.Tensor, bos_id: int | None) -> list[dict]:
    """Scores of each row of `ids` [B, L] given its vectors [B, k, d]."""
    device = next(model.parameters()).device
    ids, memory = ids.to(device), vectors.to(device)
    inputs, targets = inputs_and_targets(ids, bos_id)
    before, acc_before, _ = _bits_and_accuracy(model, None, inputs, targets)
    after, acc_after, prefix = _bits_and_accuracy(model, memory, inputs, targets)
    generated = greedy_tokens(model, memory, inputs[:, :1], targets.shape[1])
    greedy_prefix = leading_correct(generated == targets).tolist()
    predicted = targets.shape[1]
    return [
        {
            "token_accuracy": acc_after[i], "teacher_forced_prefix": prefix[i],
            "exact_greedy": greedy_prefix[i] == predicted, "greedy_prefix": greedy_prefix[i],
            "ce_before_bits": before[i], "ce_after_bits": after[i], "info_gain_bits": before[i] - after[i],
            "accuracy_before": acc_before[i], "gain_tokens": (acc_after[i] - acc_before[i]) * predicted,
            "predicted_tokens": predicted,
        }
        for i in range(ids.shape[0])
    ]
