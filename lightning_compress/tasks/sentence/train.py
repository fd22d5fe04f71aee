"""The sentence task in the shared fit sequence (`runner.py`) and in `lcompress eval`."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from data_modules.records import check_local_source
from data_modules.sentences import SentenceDataModule

from ...config import config_to_dict, merged_config, parse_overrides
from ...reports import rows_markdown
from ...runner import Build, rank_zero_print
from .config import SentenceExperimentConfig
from .evaluate import PRECISION_COLUMNS, evaluate, write_results
from .module import SentenceAutoencoderModule
from .tokenizer import SeenVocabulary, seen_tokens, sentence_tokenizer

MONITOR = "val/token_error"


def sentence_datamodule(cfg: DictConfig, pad_id: int, encode) -> SentenceDataModule:
    d = cfg.data
    return SentenceDataModule(d.source, encode, pad_id, min_tokens=d.min_tokens, max_tokens=d.max_tokens,
                              text_field=d.text_field, val_per_mille=d.val_per_mille, test_per_mille=d.test_per_mille,
                              hub_split=d.hub_split, batch_size=d.batch_size, val_size=d.val_size, test_size=d.test_size,
                              shuffle_buffer=d.shuffle_buffer, num_workers=d.num_workers, seed=cfg.seed)


def preflight(cfg: DictConfig) -> None:
    check_local_source(cfg.data.source)  # a missing or truncated file fails here, before the tokenizer loads
    sentence_tokenizer(cfg.data.tokenizer)


def scan_vocabulary(cfg: DictConfig) -> SeenVocabulary:
    """The tokens of the training sentences (every rank reads the same ones: the same result)."""
    tokenizer = sentence_tokenizer(cfg.data.tokenizer)
    stream = sentence_datamodule(cfg, 0, tokenizer.encode).stream("train", limit=cfg.model.vocabulary_scan or None)
    kept, read = seen_tokens(ids for _, ids in stream.usable())
    vocabulary = SeenVocabulary(tokenizer, kept)
    rank_zero_print(f"vocabulary: {len(kept):,} of the tokenizer's {tokenizer.vocab:,} ids occur in "
                    f"{read:,} training sentences; the others become UNK (never generated)")
    return vocabulary


def build(cfg: DictConfig, trainer_kwargs: dict) -> Build:
    m = cfg.model
    tokenizer = scan_vocabulary(cfg) if m.vocabulary == "seen" else sentence_tokenizer(cfg.data.tokenizer)
    module = SentenceAutoencoderModule(config_to_dict(cfg), tokenizer.vocab, getattr(tokenizer, "kept", None))
    rank_zero_print(f"SentenceAutoencoder: {m.layers} layer(s) each side, width {m.width} ({m.pooling} pooling, vector "
                    f"fed to {'every decoder input' if m.conditioning == 'every' else 'the first decoder input'}), "
                    f"{module.parameter_count():,} parameters ({module.net.embed.weight.numel():,} in the "
                    f"{tokenizer.vocab + 2}-token embedding{', tied to the head' if m.tie_embeddings else ''}); "
                    f"vector {m.precision}")
    headline = {"layers": m.layers, "width": m.width, "pooling": m.pooling, "precision": m.precision, "lr": m.lr,
                "steps": trainer_kwargs["max_steps"], "batch": cfg.data.batch_size}
    datamodule = sentence_datamodule(cfg, module.net.pad, tokenizer.encode)
    return Build(module=module, datamodule=datamodule, monitor=MONITOR, progress_refresh=10,
                 throughput=("tokens", lambda batch: int(batch["lengths"].sum())), headline=headline)


def _evaluate_and_write(module, cfg: DictConfig, split: str, folder: Path, log_dir: Path | None) -> dict:
    datamodule = sentence_datamodule(cfg, module.net.pad, module.tokenizer.encode)
    loader = datamodule.loader(datamodule.held_out(split, cfg.data.test_size if split == "test" else None))
    m = cfg.model
    result = evaluate(module, loader, list(cfg.eval.precisions) or [m.precision], m.precision, cfg.eval.interpolation_steps)
    title = f"{m.layers} layer(s), width {m.width}, {result['metrics']['sentences']} {split} sentences"
    write_results(result, folder, title, log_dir)
    metrics = result["metrics"]
    print(rows_markdown(PRECISION_COLUMNS, metrics["by_precision"]))
    print(f"{metrics['sentences']} sentences, {metrics['utf8_bytes_per_sentence']:.1f} UTF-8 bytes each "
          f"(gzip {metrics['gzip_bytes_per_sentence']:.1f}, zstd {metrics['zstd_bytes_per_sentence']:.1f}); vector "
          f"{metrics['bytes_per_vector']:.0f} bytes ({metrics['precision']}); {metrics['parameters']:,} parameters = "
          f"{metrics['share_of_bert_base']:.1%} of BERT-base, {metrics['share_of_gpt2_small']:.1%} of GPT-2 small")
    print(f"written to {folder}")
    return metrics


def finish(cfg: DictConfig, build: Build, trainer, checkpoint: str, run_dir: Path) -> dict:
    from ...checkpoint_io import load_checkpoint

    module = build.module
    if checkpoint:
        module.load_state_dict(load_checkpoint(checkpoint).state_dict)
    metrics = _evaluate_and_write(module, cfg, "test", run_dir / "eval_test", run_dir)
    headline = {k: metrics[k] for k in ("token_accuracy", "exact_match", "bleu", "bytes_per_vector",
                                        "utf8_bytes_per_sentence", "parameters")}
    return {"metrics": headline, "folder": str(run_dir / "eval_test")}


def evaluate_checkpoint(checkpoint, overrides: list[str], out: str | None) -> int:
    """`lcompress eval CKPT [data.source=... eval.split=all]`: metrics.json and tables."""
    cfg = merged_config(SentenceExperimentConfig, [(str(checkpoint.path), checkpoint.config),
                                                   ("overrides", parse_overrides(overrides, SentenceExperimentConfig))])
    module = SentenceAutoencoderModule(checkpoint.raw["hyper_parameters"]["config"], checkpoint.raw["hyper_parameters"]["vocab"])
    module.load_state_dict(checkpoint.state_dict)
    folder = Path(out)  # the core picks a new folder when --out is not given
    _evaluate_and_write(module, cfg, cfg.eval.split, folder, None)
    return 0
