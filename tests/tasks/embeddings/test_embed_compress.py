"""The embeddings task end to end on the tiny random decoder, the autoencoder on a small matrix,
and perplexity with the identity reconstruction against the model's own loss."""

import csv
import math

import pytest
import torch

from lightning_compress.backbone import fingerprint, load_backbone, tiny_random_decoder
from lightning_compress.cli import main
from lightning_compress.config import ConfigError, load_config
from lightning_compress.embedding_factors import FactorsError, apply_factors, input_embedding_matrix, load_factors
from lightning_compress.tasks.embeddings.config import METHODS
from lightning_compress.tasks.embeddings.factorize import truncated_svd
from lightning_compress.tasks.embeddings.run import run_embed_compress, train_autoencoder
from lightning_compress.tasks.embeddings.score import PerplexityScorer, row_errors

from helpers import EXPERIMENTS

CONFIG = EXPERIMENTS / "embeddings" / "embed_compress.yaml"
TINY = ["decoder.source=tiny-random", "data.test_texts=6", "data.val_texts=3", "data.max_tokens=24",
        "embed.frequency_texts=100", "embed.autoencoder.epochs=1", "embed.autoencoder.batch_size=4096"]


def test_identity_reconstruction_gives_the_models_own_perplexity():
    model = tiny_random_decoder(300)
    ids = torch.randint(300, (3, 10)).tolist()
    ids[2] = ids[2][:6]  # ragged: padding must not count
    matrix = input_embedding_matrix(model).detach()
    score = PerplexityScorer(model, ids, batch_size=2).score(matrix, {"input": matrix, "tied": matrix})
    nll, count = 0.0, 0
    with torch.no_grad():
        for row in ids:
            x = torch.tensor([row])
            nll += float(model(x, labels=x).loss) * (len(row) - 1)
            count += len(row) - 1
    for mode in ("input", "tied"):
        assert score[mode]["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)


def _settings(**changes):
    cfg = load_config(CONFIG, [f"embed.autoencoder.{k}={v}" for k, v in changes.items()])
    return cfg.embed.autoencoder


def test_autoencoder_loss_falls_and_beats_svd_on_cosine_distance(tmp_path):
    generator = torch.Generator().manual_seed(0)
    # Rows of very different lengths: SVD spends its rank on the long ones.
    matrix = torch.randn(2000, 32, generator=generator) * torch.randn(2000, 1, generator=generator).mul(1.5).exp()
    svd = truncated_svd(matrix, 8)
    settings = _settings(epochs=6, batch_size=64, val_every_epochs=3, lr=3e-3)
    factors = train_autoencoder(matrix, matrix, 8, settings, None, svd, tmp_path, "ae", progress=False)
    losses = [float(v) for v in _scalars(tmp_path / "tensorboard" / "ae", "train/loss")]
    assert losses[-1] < losses[0]
    assert row_errors(matrix, factors.matrix())["cosine_distance"] < 0.9 * row_errors(matrix, svd.matrix())["cosine_distance"]
    assert (tmp_path / "checkpoints" / "ae" / "best.ckpt").is_file()


def _scalars(log_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_embed_compress_writes_the_table_and_saves_loadable_factors(tmp_path, capsys):
    out = tmp_path / "emb.safetensors"
    rc = main(["embed-compress", str(CONFIG), f"output_dir={tmp_path}", *TINY, "embed.ratios=[4]",
               "embed.methods=[autoencoder]", "--save", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "sample from the factored model" in printed
    rows = list(csv.DictReader(open(tmp_path / "embed_compress" / "version_0" / "results.csv")))
    assert {(r["method"], r["mode"]) for r in rows} == {("original", "input"), ("autoencoder", "input"), ("autoencoder", "tied")}
    assert all(float(r["perplexity"]) > 1 for r in rows)
    assert (tmp_path / "embed_compress" / "version_0" / "perplexity_vs_ratio.png").stat().st_size > 1000
    # Loaded back by the core, as any task's decoder: same matrix, tied head on the factors.
    factors = load_factors(out)
    backbone = load_backbone("tiny-random", "float32", str(out))
    assert torch.allclose(input_embedding_matrix(backbone.decoder), factors.matrix())
    assert type(backbone.decoder.get_output_embeddings()).__name__ == "FactorizedHead"


def test_every_method_and_both_modes(tmp_path):
    cfg = load_config(CONFIG, [f"output_dir={tmp_path}", *TINY, "embed.ratios=[2,8]"])
    rows = run_embed_compress(cfg, progress=False)["rows"]
    assert len(rows) == 1 + 2 * len(METHODS) * 2
    by = {(r["method"], r["ratio"], r["mode"]): r for r in rows}
    # At a higher ratio the same method loses more of each row.
    assert by[("svd", 8.0, "input")]["cosine_distance"] > by[("svd", 2.0, "input")]["cosine_distance"]
    assert len({by[(m, 2.0, "tied")]["stored_parameters"] for m in METHODS}) == 1


@pytest.mark.parametrize("override, message", [
    ("embed.ratios=[1]", "ratios"), ("embed.ratios=[]", "ratios"), ("embed.methods=[pca]", "methods"),
    ("embed.save_mode=both", "save_mode"), ("data.max_tokens=1", "max_tokens"),
    ("embed.autoencoder.epochs=0", "epochs"),
])
def test_bad_settings_are_refused_before_any_model_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG, [override])


def test_save_needs_one_method_and_one_ratio(tmp_path):
    cfg = load_config(CONFIG, [f"output_dir={tmp_path}", *TINY])
    with pytest.raises(ConfigError, match="one method and one ratio"):
        run_embed_compress(cfg, save=str(tmp_path / "x.safetensors"))


def test_a_ratio_too_high_for_the_model_is_one_clear_line(tmp_path, capsys):
    rc = main(["embed-compress", str(CONFIG), f"output_dir={tmp_path}", *TINY, "embed.ratios=[5000]"])
    err = capsys.readouterr().err
    assert rc != 0 and "latent size k=" in err and "Traceback" not in err


def test_factors_of_another_model_are_refused(tmp_path):
    factors_path = tmp_path / "f.safetensors"
    run_embed_compress(load_config(CONFIG, [f"output_dir={tmp_path}", *TINY, "embed.ratios=[4]", "embed.methods=[svd]"]),
                       save=str(factors_path), progress=False)
    other = tiny_random_decoder(load_factors(factors_path).codes.shape[0], seed=1)
    with pytest.raises(FactorsError, match="made for another model"):
        apply_factors(other, load_factors(factors_path), fingerprint(other))


def test_another_task_trains_and_generates_on_the_factors(tmp_path, tiny_config):
    """decoder.embedding_factors in the prompt task: a short fit, its evaluation and generation."""
    from lightning_compress.embedding_factors import save_factors
    from lightning_compress.runner import run_fit

    backbone = load_backbone("tiny-random")
    factors = truncated_svd(input_embedding_matrix(backbone.decoder).detach(), 16)
    factors.fingerprint, factors.mode = backbone.fingerprint, "tied"
    path = save_factors(tmp_path / "f.safetensors", factors)
    result = run_fit(tiny_config(f"decoder.embedding_factors={path}", f"output_dir={tmp_path}/runs"))
    assert result["checkpoint"] and "bleu" in result["metrics"]
