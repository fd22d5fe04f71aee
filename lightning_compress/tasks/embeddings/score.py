"""Perplexity of the frozen LM with a replaced embedding matrix, and row-level errors.

Both evaluation modes share the transformer pass: the input embedding is the reconstruction
in both, so the hidden states are the same, and only the head differs (`input`: the original
matrix, untied; `tied`: the reconstruction). One forward pass serves both modes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class PerplexityScorer:
    """Next-token perplexity and accuracy of `model` on fixed texts, for any embedding matrix."""

    def __init__(self, model, token_ids: list[list[int]], batch_size: int = 8):
        self.model = model
        self.batches = []
        for start in range(0, len(token_ids), batch_size):
            rows = token_ids[start : start + batch_size]
            width = max(len(r) for r in rows)
            ids = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            self.batches.append((ids, mask))
        self.tokens = sum(int(m[:, 1:].sum()) for _, m in self.batches)

    @torch.no_grad()
    def score(self, embedding: torch.Tensor, heads: dict[str, torch.Tensor]) -> dict[str, dict]:
        """{mode: {"perplexity", "accuracy", "nll"}} with `embedding` [V, d] as the input
        embedding and heads[mode] [V, d] as the output matrix."""
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        embedding = embedding.to(device, dtype)
        heads = {mode: head.to(device, dtype) for mode, head in heads.items()}
        nll = {mode: 0.0 for mode in heads}
        right = {mode: 0 for mode in heads}
        for ids, mask in self.batches:
            ids, mask = ids.to(device), mask.to(device)
            hidden = self.model.base_model(inputs_embeds=F.embedding(ids, embedding), attention_mask=mask).last_hidden_state
            hidden, targets, keep = hidden[:, :-1], ids[:, 1:], mask[:, 1:].bool()
            for mode, head in heads.items():
                logits = (hidden[keep] @ head.T).float()
                nll[mode] += float(F.cross_entropy(logits, targets[keep], reduction="sum"))
                right[mode] += int((logits.argmax(-1) == targets[keep]).sum())
        return {mode: {"perplexity": math.exp(nll[mode] / self.tokens), "accuracy": right[mode] / self.tokens,
                       "nll": nll[mode] / self.tokens} for mode in heads}


def row_errors(original: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, float]:
    """Mean cosine distance, RMSE and MAE over the rows (the paper's evaluation.py)."""
    original, reconstruction = original.double(), reconstruction.double()
    diff = reconstruction - original
    return {"cosine_distance": float((1 - F.cosine_similarity(original, reconstruction, dim=1)).mean()),
            "rmse": float(diff.pow(2).mean().sqrt()), "mae": float(diff.abs().mean())}
