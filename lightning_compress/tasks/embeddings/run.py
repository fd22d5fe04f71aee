"""`lcompress embed-compress CONFIG`: factor the decoder's token embedding at each ratio with each
method, put the reconstruction back into the LM, and score it on the test texts in both modes.

Run folder <output_dir>/<name>/version_K/: results.{md,csv,json} (one row per method, ratio and
mode, plus the original), perplexity_vs_ratio.png, the autoencoders' best checkpoints and
TensorBoard logs (training curves per ratio, the figure and the table)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from ...config import ConfigError, config_to_dict
from ...embedding_factors import EmbeddingFactors, input_embedding_matrix, latent_size
from ...reports import (finish_figure, mirror_to_tensorboard, new_figure, rows_markdown, write_figure, write_json,
                        write_table)
from ...run_dir import versions
from .config import TASK

COLUMNS = ["method", "ratio", "k", "stored_parameters", "mode", "perplexity", "accuracy", "cosine_distance", "rmse",
           "mae", "seconds"]


def train_autoencoder(matrix: torch.Tensor, head: torch.Tensor, k: int, settings, scorer, init: EmbeddingFactors | None,
                      run_dir: Path, tag: str, progress: bool = True, row_weights: torch.Tensor | None = None
                      ) -> EmbeddingFactors:
    """Fit one autoencoder; the epoch with the best validation perplexity is kept."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from ...checkpoint_io import AtomicCheckpointIO, safe_torch_load
    from .autoencoder import EmbeddingAutoencoderModule

    module = EmbeddingAutoencoderModule(matrix, k, settings, scorer, init, head, row_weights)
    monitor = "val/perplexity" if scorer is not None else "val/cosine_distance"
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints" / tag, filename="best", monitor=monitor, mode="min",
                           save_top_k=1, save_weights_only=True, enable_version_counter=False)
    trainer = pl.Trainer(max_epochs=settings.epochs, check_val_every_n_epoch=settings.val_every_epochs,
                         num_sanity_val_steps=0, logger=TensorBoardLogger(run_dir, name="tensorboard", version=tag),
                         callbacks=[best], plugins=[AtomicCheckpointIO()], enable_progress_bar=progress,
                         enable_model_summary=False, accelerator="cpu", deterministic=True)
    trainer.fit(module)
    if best.best_model_path:
        state = safe_torch_load(best.best_model_path)["state_dict"]
        module.load_state_dict(state)
        print(f"[embed] {tag}: best {monitor} {float(best.best_model_score):.4g} ({best.best_model_path})")
    return module.autoencoder.factors(module.matrix)


def factor(method: str, matrix: torch.Tensor, head: torch.Tensor, k: int, counts: torch.Tensor, cfg: DictConfig,
           scorer_val, run_dir: Path, ratio: float, progress: bool, svds: dict) -> EmbeddingFactors:
    """`svds` holds the SVDs already computed at this k: an autoencoder starts from the one
    its baseline computed instead of decomposing the matrix again."""
    from .factorize import frequency_weights, truncated_svd, weighted_svd

    power = cfg.embed.frequency_power

    def svd(name: str) -> EmbeddingFactors:
        if name not in svds:
            svds[name] = truncated_svd(matrix, k) if name == "svd" else weighted_svd(matrix, counts, k, power)
        return svds[name]

    if method in ("svd", "svd_weighted"):
        return svd(method)
    settings = cfg.embed.autoencoder
    weighted = method == "autoencoder_weighted"
    init = svd("svd_weighted" if weighted else "svd") if settings.svd_init else None
    factors = train_autoencoder(matrix, head, k, settings, scorer_val, init, run_dir, f"{method}_{ratio:g}x", progress,
                                frequency_weights(counts, power) if weighted else None)
    factors.method = method
    return factors


def perplexity_figure(rows: list[dict], title: str):
    figure, axis = new_figure(7, 4.2)
    original = next(r["perplexity"] for r in rows if r["method"] == "original")
    for method in [m for m in dict.fromkeys(r["method"] for r in rows) if m != "original"]:
        line = None
        for mode, style in (("input", "-"), ("tied", "--")):
            mine = sorted((r for r in rows if r["method"] == method and r["mode"] == mode), key=lambda r: r["ratio"])
            if mine:
                line, = axis.plot([r["ratio"] for r in mine], [r["perplexity"] for r in mine], marker="o", ls=style,
                                  color=line.get_color() if line else None, label=f"{method} ({mode})")
    axis.axhline(original, color="black", lw=0.8, ls=":", label=f"original ({original:.1f})")
    axis.set_yscale("log")
    return finish_figure(figure, axis, "compression ratio (vocab x d / stored parameters)", "test perplexity", title,
                         legend_size=7)


def run_embed_compress(cfg: DictConfig, save: str | None = None, progress: bool = True) -> dict:
    from ...backbone import load_configured_backbone
    from .factorize import token_counts
    from .score import PerplexityScorer, row_errors
    from .texts import load_split_texts

    if cfg.task != TASK:
        raise ConfigError(f"lcompress embed-compress needs a `task: embeddings` experiment, not task={cfg.task!r}")
    if save and (len(cfg.embed.methods) != 1 or len(cfg.embed.ratios) != 1):
        raise ConfigError(f"--save writes one compressed embedding: give one method and one ratio, e.g. "
                          f"embed.methods=[autoencoder] embed.ratios=[2] (got {list(cfg.embed.methods)} x {list(cfg.embed.ratios)})")
    root = Path(cfg.output_dir) / cfg.name
    run_dir = root / f"version_{(versions(root) or [-1])[-1] + 1}"
    torch.manual_seed(cfg.seed)
    backbone = load_configured_backbone(cfg.decoder)
    model = backbone.decoder
    matrix = input_embedding_matrix(model).detach().float().clone()
    vocab, d = matrix.shape
    ks = {ratio: latent_size(vocab, d, ratio) for ratio in cfg.embed.ratios}  # bad ratios fail before any work
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == input_embedding_matrix(model).data_ptr()
    texts = load_split_texts(cfg, backbone.tokenizer)
    print(f"[embed] {backbone.source}: embedding {vocab} x {d}, head {'tied' if tied else 'separate'}\n"
          f"[embed] {texts.report}\n[embed] run folder {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config_to_dict(cfg))
    scorer = PerplexityScorer(model, texts.test, cfg.data.batch_size)
    scorer_val = PerplexityScorer(model, texts.val, cfg.data.batch_size)
    counts = token_counts(texts.train, vocab)
    head_matrix = head.weight.detach().float() if head is not None else matrix
    base = scorer.score(matrix, {"input": head_matrix})["input"]
    rows = [{"method": "original", "ratio": 1.0, "k": d, "stored_parameters": vocab * d, "mode": "input",
             **base, "cosine_distance": 0.0, "rmse": 0.0, "mae": 0.0, "seconds": 0.0}]
    print(f"[embed] original: perplexity {base['perplexity']:.2f} on {scorer.tokens} test tokens")
    kept = None
    for ratio, k in ks.items():
        svds = {}
        for method in cfg.embed.methods:
            began = time.perf_counter()
            factors = factor(method, matrix, head_matrix, k, counts, cfg, scorer_val, run_dir, ratio, progress, svds)
            seconds = time.perf_counter() - began
            reconstruction = factors.matrix()
            heads = {"input": head_matrix, **({"tied": reconstruction} if tied else {})}
            errors = row_errors(matrix, reconstruction)
            for mode, score in scorer.score(reconstruction, heads).items():
                rows.append({"method": method, "ratio": ratio, "k": k, "stored_parameters": factors.stored_parameters,
                             "mode": mode, **score, **errors, "seconds": round(seconds, 1)})
                print(f"[embed] {method} {ratio:g}x (k={k}) {mode}: perplexity {score['perplexity']:.1f}, "
                      f"next-token accuracy {score['accuracy']:.3f}, cosine distance {errors['cosine_distance']:.4f}")
            kept = factors
    table = rows_markdown(COLUMNS, rows)
    write_table(run_dir, "results", COLUMNS, rows)
    title = f"{backbone.source}: {len(texts.test)} test texts"
    figure = perplexity_figure(rows, title)
    write_figure(run_dir / "perplexity_vs_ratio.png", figure)
    mirror_to_tensorboard(run_dir / "tensorboard" / "summary", {"embed/perplexity_vs_ratio": figure},
                          {"embed/results": table})
    print(table)
    print(f"results: {run_dir / 'results.md'} (+ .csv, .json, perplexity_vs_ratio.png)\n"
          f"TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}")
    if save:
        save_and_show(kept, cfg, backbone, tied, save)
    return {"rows": rows, "run_dir": str(run_dir)}


def save_and_show(factors: EmbeddingFactors, cfg: DictConfig, backbone, tied: bool, path: str) -> None:
    """Write the factors, load them into the model as any task would, and show a generation."""
    from ...embedding_factors import apply_factors, load_factors, save_factors

    factors.mode = cfg.embed.save_mode if tied else "input"
    factors.fingerprint, factors.source = backbone.fingerprint, backbone.source
    save_factors(path, factors)
    print(f"saved {factors.method} factors ({factors.stored_parameters:,} parameters, {factors.ratio:.2f}x, "
          f"{factors.mode} mode) to {path}; use them with decoder.embedding_factors={path}")
    model, tokenizer = backbone.decoder, backbone.tokenizer
    apply_factors(model, load_factors(path), backbone.fingerprint, where=path)
    prompt = "The theory of compression"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    print(f"sample from the factored model: {tokenizer.decode(out[0], skip_special_tokens=True)!r}")
