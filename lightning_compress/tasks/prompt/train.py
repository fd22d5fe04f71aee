"""The prompt task in the shared fit sequence (`lightning_compress/runner.py`) and in
`lcompress eval`: build the PromptCompressor and its data, evaluate the best checkpoint on
the held-out split after fit, and evaluate a checkpoint given on the command line.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from data_modules.arxiv_abstracts import ArxivAbstractsDataModule
from data_modules.records import check_local_source

from ...backbone import load_configured_backbone
from ...checkpoint_io import load_checkpoint
from ...config import ConfigError, parse_overrides
from ...runner import Build, rank_zero_print
from .callbacks import LatentInterpolation, RegenerationSamples
from .config import TASK, PromptExperimentConfig
from .evaluate import evaluate, metrics_table, write_results
from .module import PromptCompressor


def preflight(cfg: DictConfig) -> None:
    for source in (cfg.data.source, cfg.data.val_source, cfg.data.test_source):
        if source:
            check_local_source(source)


def fsdp_strategy(decoder, encoder_name: str):
    """FSDP that shards the frozen decoder layer by layer (one unit per decoder block, the
    encoder's copied blocks included), for decoders that do not fit one GPU. Frozen and
    trainable parameters share the root unit, which FSDP allows with use_orig_params.
    Lightning runs FSDP on GPUs only."""
    from lightning.pytorch.strategies import FSDPStrategy

    if encoder_name.startswith("lora"):
        raise ConfigError(
            f"trainer.strategy=fsdp with model.encoder.name={encoder_name}: LoRA encoders share the decoder's weight "
            "storage, which FSDP cannot shard into two units; use ddp, or the full / mlp_free encoders with fsdp"
        )
    block = type(decoder.model.layers[0])
    return FSDPStrategy(auto_wrap_policy={block}, use_orig_params=True, state_dict_type="full")


def build(cfg: DictConfig, trainer_kwargs: dict) -> Build:
    backbone = load_configured_backbone(cfg.decoder)
    module = PromptCompressor(cfg, backbone)
    enc = module.encoder
    rank_zero_print(
        f"encoder {cfg.model.encoder.name}: {enc.trainable_parameter_count():,} trainable of "
        f"{enc.parameter_count():,} parameters; decoder: {sum(p.numel() for p in module.decoder.parameters()):,} (frozen)"
    )
    datamodule = ArxivAbstractsDataModule.from_config(cfg.data, cfg.eval, backbone.tokenizer, module.pad_token_id, cfg.seed)
    callbacks = [RegenerationSamples(cfg.callbacks.num_samples)]
    if cfg.callbacks.interpolation_points:
        callbacks.append(LatentInterpolation(cfg.callbacks.interpolation_points))
    strategy = fsdp_strategy(module.decoder, cfg.model.encoder.name) if trainer_kwargs.get("strategy") == "fsdp" else None
    # Warm starts (distillation, MLP fade) train another model than the final encoder: it
    # may become best.ckpt only after them.
    warm = cfg.model.distill_steps + cfg.model.mlp_fade_steps
    n, m = cfg.data.n_tokens, cfg.model.memory_tokens
    headline = {"encoder": cfg.model.encoder.name, "n": n, "m": m, "ratio": round(n / m, 2), "lr": cfg.model.lr,
                "steps": cfg.trainer.max_steps, "batch": cfg.data.batch_size}
    return Build(module=module, datamodule=datamodule, monitor="val/loss", callbacks=callbacks, strategy=strategy,
                 best_from_step=warm,
                 throughput=("tokens", lambda batch: batch["input_ids"].numel()), headline=headline)


def finish(cfg: DictConfig, build: Build, trainer, checkpoint: str, run_dir: Path) -> dict:
    """Regenerate the held-out split with the best checkpoint and print the table."""
    module = build.module
    if checkpoint:
        module.load_trainable_state(load_checkpoint(checkpoint, task=TASK).state_dict, checkpoint)
    results = evaluate(module.to(trainer.strategy.root_device), build.datamodule, cfg.eval.split, cfg.eval.num_samples,
                       cfg.eval.batch_size)
    folder = write_results(run_dir / f"eval_{cfg.eval.split}", results)
    print(metrics_table(results["metrics"]))
    print(f"metrics and regenerations: {folder}")
    return {**results, "folder": str(folder)}


def evaluate_checkpoint(checkpoint, overrides: list[str], out: str | None) -> int:
    """`lcompress eval CKPT`: regenerate `eval.split` of `data.source` and score it."""
    module = PromptCompressor.load_checkpoint(checkpoint, parse_overrides(overrides, PromptExperimentConfig))
    if torch.cuda.is_available():
        module.cuda()
    cfg = module.cfg
    datamodule = ArxivAbstractsDataModule.from_config(cfg.data, cfg.eval, module.tokenizer, module.pad_token_id, cfg.seed)
    results = evaluate(module, datamodule, cfg.eval.split, cfg.eval.num_samples, cfg.eval.batch_size)
    folder = Path(out)  # the core picks a new folder when --out is not given
    write_results(folder, results)
    print(metrics_table(results["metrics"]))
    print(f"written to {folder}")
    return 0
