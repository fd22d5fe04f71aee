"""SVD baselines, stored exactly as the autoencoder's factors (codes, decoder, bias).

Both centre the rows first, so that every method stores the same bias vector and the same
parameter count at a given k: E ~= C W + b with b the (weighted) mean row.

- `truncated_svd`: the paper's baseline (sklearn TruncatedSVD), the best rank-k fit in the
  Frobenius norm, every row counting the same.
- `weighted_svd`: minimises sum_i w_i ||e_i - (c_i W + b)||^2 with w_i from the token's
  frequency. Its solution: b = the w-weighted mean, W = the top-k right singular vectors of
  diag(sqrt(w)) (E - b); for a fixed orthonormal W the best code of a row is its projection
  c_i = (e_i - b) W^T, whatever its weight, so the weights only choose the subspace. Frequent
  tokens are then reconstructed better, which is what perplexity on real text measures.
"""

from __future__ import annotations

import torch

from ...embedding_factors import EmbeddingFactors


def _factors(matrix: torch.Tensor, weights: torch.Tensor | None, k: int, method: str) -> EmbeddingFactors:
    matrix = matrix.detach().double()
    if weights is None:
        weights = torch.ones(matrix.shape[0], dtype=torch.float64)
    weights = weights.double() / weights.double().sum()
    bias = weights @ matrix
    centred = matrix - bias
    _, _, vh = torch.linalg.svd(centred * weights.sqrt()[:, None], full_matrices=False)
    decoder = vh[:k]  # [k, d], orthonormal rows
    codes = centred @ decoder.T
    return EmbeddingFactors(codes.float(), decoder.float(), bias.float(), method=method)


def truncated_svd(matrix: torch.Tensor, k: int) -> EmbeddingFactors:
    return _factors(matrix, None, k, "svd")


def frequency_weights(counts: torch.Tensor, power: float = 0.5) -> torch.Tensor:
    """(count + 1) ** power: unseen tokens keep a small weight."""
    return (counts.double() + 1) ** power


def weighted_svd(matrix: torch.Tensor, counts: torch.Tensor, k: int, power: float = 0.5) -> EmbeddingFactors:
    return _factors(matrix, frequency_weights(counts, power), k, "svd_weighted")


def token_counts(token_ids: list[list[int]], vocab: int) -> torch.Tensor:
    counts = torch.zeros(vocab, dtype=torch.float64)
    for ids in token_ids:
        counts += torch.bincount(torch.tensor(ids, dtype=torch.long), minlength=vocab)[:vocab].double()
    return counts
