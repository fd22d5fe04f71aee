"""A token-embedding matrix stored as factors, and a decoder that runs on them.

The vocab x d matrix E is stored as codes C (vocab x k), a decoder W (k x d) and a bias b (d):
row i is  e_i ~= C_i W + b. Every compression method (truncated SVD, weighted SVD, the
cosine-direction autoencoder) produces exactly these three tensors, so the stored-parameter
count, and with it the compression ratio vocab*d / (vocab*k + k*d + d), is computed one way.

`decoder.embedding_factors=FILE` (any task that loads a decoder) puts the factors into the
model without ever materialising E: the input embedding looks up C and multiplies by W;
with `mode = tied` the output head is factored too, logits = (h W^T) C^T + h.b, which is the
real memory saving of a tied model. With `mode = input` only the input side is factored and
the head keeps the original matrix (no memory saved for a tied head).

The file is safetensors (no pickle): the three tensors plus metadata naming the method, the
mode and the identity of the model it was made for; loading it into another model is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .atomic import prepare_atomic_write

MODES = ("input", "tied")
FORMAT = "lightning_compress.embedding_factors/1"


class FactorsError(ValueError):
    """A factors file that cannot be used with this model."""


@dataclass
class EmbeddingFactors:
    codes: torch.Tensor  # [vocab, k]
    decoder: torch.Tensor  # [k, d]
    bias: torch.Tensor  # [d]
    method: str = ""
    # input: only the input embedding uses the factors | tied: the output head too.
    mode: str = "tied"
    # backbone.fingerprint of the model whose embedding was compressed.
    fingerprint: str = ""
    source: str = ""

    @property
    def stored_parameters(self) -> int:
        return self.codes.numel() + self.decoder.numel() + self.bias.numel()

    @property
    def ratio(self) -> float:
        """vocab*d / stored parameters: the one definition of the compression ratio."""
        return self.codes.shape[0] * self.decoder.shape[1] / self.stored_parameters

    def matrix(self) -> torch.Tensor:
        return self.codes @ self.decoder + self.bias


def latent_size(vocab: int, d: int, ratio: float) -> int:
    """The largest k whose factors store at most vocab*d/ratio parameters (codes, decoder, bias)."""
    k = int((vocab * d / ratio - d) // (vocab + d)) if ratio > 1 else d
    if not 1 <= k < d:
        raise FactorsError(f"compression ratio {ratio} gives a latent size k={k} for a {vocab} x {d} embedding; "
                           f"k must be in [1, {d - 1}] (a ratio above 1 and at most about {vocab * d / (vocab + 2 * d):.0f})")
    return k


def input_embedding_matrix(model: nn.Module) -> torch.Tensor:
    """The model's input-embedding matrix [vocab, d], or a clear error if it has none."""
    layer = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise FactorsError(f"{type(model).__name__} has no input-embedding matrix (get_input_embeddings() gave "
                           f"{type(layer).__name__}); embedding compression needs a model with a vocab x d embedding")
    return weight


class FactorizedEmbedding(nn.Module):
    """Input embedding e_i = C_i W + b, computed per looked-up token."""

    def __init__(self, factors: EmbeddingFactors):
        super().__init__()
        self.codes = nn.Embedding.from_pretrained(factors.codes.clone(), freeze=True)
        self.decoder = nn.Parameter(factors.decoder.clone(), requires_grad=False)
        self.bias = nn.Parameter(factors.bias.clone(), requires_grad=False)
        self.num_embeddings, self.embedding_dim = factors.codes.shape[0], factors.decoder.shape[1]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codes(ids) @ self.decoder + self.bias

    @property
    def weight(self) -> torch.Tensor:
        """The full matrix, materialised on demand (for code that reads embedding statistics)."""
        return self.codes.weight @ self.decoder + self.bias


class FactorizedHead(nn.Module):
    """Tied output head on the factors: h E^T = (h W^T) C^T + h.b, never forming E."""

    def __init__(self, embedding: FactorizedEmbedding):
        super().__init__()
        self.embedding = embedding

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        e = self.embedding
        return (hidden @ e.decoder.T) @ e.codes.weight.T + (hidden @ e.bias)[..., None]

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight


def save_factors(path: str | os.PathLike, factors: EmbeddingFactors) -> Path:
    """Write the factors as safetensors via a temporary file and a rename."""
    from safetensors.torch import save_file

    if factors.mode not in MODES:
        raise FactorsError(f"factors mode {factors.mode!r}; expected one of {MODES}")
    path = Path(path)
    tmp = prepare_atomic_write(path)
    tensors = {"codes": factors.codes.float().contiguous(), "decoder": factors.decoder.float().contiguous(),
               "bias": factors.bias.float().contiguous()}
    metadata = {"format": FORMAT, "method": factors.method, "mode": factors.mode,
                "fingerprint": factors.fingerprint, "source": factors.source}
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_factors(path: str | os.PathLike) -> EmbeddingFactors:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FactorsError(f"decoder.embedding_factors={str(path)!r}: no such file (write one with "
                           "`lcompress embed-compress CONFIG --save FILE`)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise FactorsError(f"{path}: not a readable embedding-factors file ({err})") from err
    if metadata.get("format") != FORMAT or set(tensors) != {"codes", "decoder", "bias"}:
        raise FactorsError(f"{path}: not an embedding-factors file of lightning_compress "
                           f"(format {metadata.get('format')!r}, tensors {sorted(tensors)})")
    return EmbeddingFactors(tensors["codes"], tensors["decoder"], tensors["bias"], metadata.get("method", ""),
                            metadata.get("mode", "tied"), metadata.get("fingerprint", ""), metadata.get("source", ""))


def apply_factors(model: nn.Module, factors: EmbeddingFactors, fingerprint: str, where: str = "") -> None:
    """Swap the model's embedding (and, in tied mode, its head) for the factored ones.
    `fingerprint` is the identity of `model` before the swap; factors made for another
    model are refused."""
    if factors.fingerprint and factors.fingerprint != fingerprint:
        raise FactorsError(f"{where or 'embedding factors'} were made for another model (fingerprint "
                           f"{factors.fingerprint}, source {factors.source!r}); this decoder is {fingerprint}")
    weight = input_embedding_matrix(model)
    if tuple(factors.codes.shape[:1]) + tuple(factors.decoder.shape[1:]) != tuple(weight.shape):
        raise FactorsError(f"{where or 'embedding factors'}: shape {factors.codes.shape[0]} x {factors.decoder.shape[1]} "
                           f"does not match the model's embedding {tuple(weight.shape)}")
    embedding = FactorizedEmbedding(factors).to(weight.device, weight.dtype)
    head = model.get_output_embeddings()
    if head is not None and head.weight is weight and factors.mode == "input":
        # Untie: the head keeps its own copy of the original matrix.
        head.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
    model.set_input_embeddings(embedding)
    if factors.mode == "tied":
        model.set_output_embeddings(FactorizedHead(embedding))
    model.config.tie_word_embeddings = False  # nothing may re-tie the head to the old matrix
