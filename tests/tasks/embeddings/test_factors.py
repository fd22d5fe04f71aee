"""Factorisations, the factors file and a decoder running on factors (core embedding_factors.py)."""

import pytest
import torch

from lightning_compress.backbone import fingerprint, tiny_random_decoder
from lightning_compress.embedding_factors import (EmbeddingFactors, FactorsError, apply_factors, input_embedding_matrix,
                                                  latent_size, load_factors, save_factors)
from lightning_compress.tasks.embeddings.factorize import token_counts, truncated_svd, weighted_svd


def _matrix(rows=300, d=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, d, generator=generator) * torch.rand(rows, 1, generator=generator).mul(3).exp()


def test_svd_at_full_rank_reconstructs_exactly():
    matrix = _matrix()
    for factors in (truncated_svd(matrix, 24), weighted_svd(matrix, torch.arange(300.0), 24)):
        assert torch.allclose(factors.matrix(), matrix, atol=1e-4)


def test_truncated_svd_is_the_best_rank_k_fit_and_weights_favour_frequent_rows():
    matrix = _matrix()
    plain = truncated_svd(matrix, 6)
    centred = matrix - matrix.mean(0)
    best = torch.linalg.matrix_norm(centred) ** 2 - (torch.linalg.svdvals(centred)[:6] ** 2).sum()
    assert torch.isclose(((plain.matrix() - matrix) ** 2).sum(), best, rtol=1e-3)
    counts = torch.zeros(300)
    counts[:20] = 1000.0  # 20 frequent tokens
    weighted = weighted_svd(matrix, counts, 6, power=1.0)
    error = lambda f: ((f.matrix() - matrix)[:20] ** 2).sum()  # noqa: E731
    assert error(weighted) < 0.5 * error(plain)


def test_parameter_count_and_ratio_match_the_tensors():
    matrix = _matrix(rows=1000, d=32)
    k = latent_size(1000, 32, 4.0)
    factors = truncated_svd(matrix, k)
    stored = sum(t.numel() for t in (factors.codes, factors.decoder, factors.bias))
    assert factors.stored_parameters == stored == 1000 * k + k * 32 + 32
    assert factors.ratio == pytest.approx(1000 * 32 / stored)
    assert factors.ratio >= 4.0 and latent_size(1000, 32, 4.0 * 1000 * 32 / (stored + 1000)) < k  # the largest k


@pytest.mark.parametrize("ratio", [1.0, 0.5, 1e6])
def test_a_ratio_giving_k_out_of_range_is_refused(ratio):
    with pytest.raises(FactorsError, match="latent size k="):
        latent_size(1000, 32, ratio)


def test_token_counts():
    counts = token_counts([[0, 1, 1], [3]], vocab=5)
    assert counts.tolist() == [1, 2, 0, 1, 0]


def test_saved_factors_reload_to_the_same_matrix(tmp_path):
    factors = truncated_svd(_matrix(), 5)
    factors.mode, factors.fingerprint, factors.source = "input", "abc", "somewhere"
    path = save_factors(tmp_path / "f.safetensors", factors)
    loaded = load_factors(path)
    assert torch.equal(loaded.matrix(), factors.matrix())
    assert (loaded.mode, loaded.fingerprint, loaded.source, loaded.method) == ("input", "abc", "somewhere", "svd")
    assert [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]  # no temporary file left


@pytest.mark.parametrize("mode", ["input", "tied"])
def test_a_decoder_runs_on_the_factors(mode):
    model = tiny_random_decoder(500)
    matrix = input_embedding_matrix(model).detach().clone()
    factors = truncated_svd(matrix, 16)
    factors.mode = mode
    ids = torch.randint(500, (2, 12))
    reconstruction = factors.matrix()
    with torch.no_grad():
        hidden = model.model(inputs_embeds=reconstruction[ids]).last_hidden_state
        expected = hidden @ (reconstruction if mode == "tied" else matrix).T
        apply_factors(model, factors, fingerprint(model))
        logits = model(ids).logits
    assert torch.allclose(logits, expected, atol=1e-4)
    stored = {name for name, _ in model.named_parameters()}
    assert "model.embed_tokens.codes.weight" in stored and ("lm_head.weight" in stored) == (mode == "input")


def test_factors_for_another_model_or_shape_are_refused(tmp_path):
    model = tiny_random_decoder(500)
    factors = truncated_svd(input_embedding_matrix(model).detach(), 8)
    factors.fingerprint = "0123456789abcdef"
    with pytest.raises(FactorsError, match="made for another model"):
        apply_factors(model, factors, fingerprint(model))
    other = truncated_svd(_matrix(rows=400, d=64), 8)
    with pytest.raises(FactorsError, match="does not match the model's embedding"):
        apply_factors(model, other, fingerprint(model))


def test_bad_factor_files_and_models_without_an_embedding(tmp_path):
    with pytest.raises(FactorsError, match="no such file"):
        load_factors(tmp_path / "nope.safetensors")
    (tmp_path / "text.safetensors").write_text("not a tensor file")
    with pytest.raises(FactorsError, match="text.safetensors: not a readable"):
        load_factors(tmp_path / "text.safetensors")
    with pytest.raises(FactorsError, match="no input-embedding matrix"):
        input_embedding_matrix(torch.nn.Linear(3, 3))
    with pytest.raises(FactorsError, match="mode"):
        save_factors(tmp_path / "x.safetensors", EmbeddingFactors(torch.zeros(3, 2), torch.zeros(2, 4), torch.zeros(4), mode="both"))
