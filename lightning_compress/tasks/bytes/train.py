"""The byte task in the shared fit sequence (`lightning_compress/runner.py`) and in
`lcompress eval`: a ByteLM on mixed byte chunks, held-out bits/byte per modality.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from omegaconf import DictConfig

from data_modules.multimodal_bytes import MultimodalBytesDataModule

from ...config import config_to_dict, merged_config, parse_overrides
from ...reports import rows_markdown, write_table
from ...runner import Build, rank_zero_print
from .config import ByteExperimentConfig
from .model import ByteLM

PREFIX = "val/bits_per_byte"


def byte_datamodule(cfg: DictConfig) -> MultimodalBytesDataModule:
    d = cfg.data
    return MultimodalBytesDataModule(
        text=d.text, images=d.images, audio=d.audio, chunk_bytes=d.chunk_bytes, weights=dict(d.weights),
        batch_size=d.batch_size, val_chunks=d.val_chunks, heldout_per_mille=d.heldout_per_mille,
        text_field=d.text_field, image_mode=d.image_mode, image_patch=list(d.image_patch), audio_bits=d.audio_bits,
        num_workers=d.num_workers, seed=cfg.seed,
    )


def stored_config(model: ByteLM, overrides: list[str]) -> DictConfig:
    """The training run's config kept in the model's checkpoint, with `key=value` overrides
    (e.g. other data) applied and checked: what eval and bench-codecs read the data with."""
    stored = model.hparams.get("config") or {}
    return merged_config(ByteExperimentConfig, [("the checkpoint's config", stored),
                                                 ("overrides", parse_overrides(overrides, ByteExperimentConfig))])


def preflight(cfg: DictConfig) -> None:
    byte_datamodule(cfg)  # missing files fail here, before anything else


def build(cfg: DictConfig, trainer_kwargs: dict) -> Build:
    datamodule = byte_datamodule(cfg)
    m = cfg.model
    model = ByteLM(m.size, cfg.data.chunk_bytes, m.lr, m.weight_decay, m.warmup_steps, trainer_kwargs["max_steps"],
                   config=config_to_dict(cfg), kv_heads=m.kv_heads)
    modalities = ", ".join(f"{k} ({len(v)} files)" for k, v in datamodule.files.items())
    heads = f", {m.kv_heads} key/value head(s)" if m.kv_heads else ""
    rank_zero_print(f"ByteLM {m.size}{heads}: {model.parameter_count():,} parameters; data: {modalities}")
    headline = {"size": m.size, "chunk_bytes": cfg.data.chunk_bytes, "lr": m.lr, "steps": trainer_kwargs["max_steps"],
                "batch": cfg.data.batch_size}
    return Build(module=model, datamodule=datamodule, monitor=PREFIX, progress_refresh=10,
                 throughput=("bytes", lambda batch: batch["bytes"].numel()), headline=headline)


def _scores(metrics: dict) -> dict:
    """{"bits_per_byte": mean, "bits_per_byte/<modality>": ...} from validation metrics."""
    return {k[len("val/"):]: float(v) for k, v in sorted(metrics.items()) if k.startswith(PREFIX)}


def _summary(scores: dict) -> str:
    return "held-out bits/byte: " + ", ".join(f"{k[len('bits_per_byte/'):] or 'mean'} {v:.3f}" for k, v in scores.items())


def finish(cfg: DictConfig, build: Build, trainer, checkpoint: str, run_dir: Path) -> dict:
    scores = _scores(trainer.callback_metrics)
    print(_summary(scores))
    print(f"next: lcompress compress FILE FILE.lcbz --model {checkpoint}\n      lcompress bench-codecs --model {checkpoint}")
    return {"metrics": scores}


def evaluate_checkpoint(checkpoint, overrides: list[str], out: str | None) -> int:
    """`lcompress eval CKPT`: bits/byte of the held-out chunks of each modality (the data of
    the training config, or `data.*` overrides), written to `out`."""
    from .api import load_byte_model

    model = load_byte_model(checkpoint)
    datamodule = byte_datamodule(stored_config(model, overrides))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=True, devices=1)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    scores = _scores(trainer.callback_metrics)
    rows = [{"modality": k[len("bits_per_byte/"):] or "mean", "bits_per_byte": v} for k, v in scores.items()]
    folder = Path(out)  # the core picks a new folder when --out is not given
    write_table(folder, "metrics", ["modality", "bits_per_byte"], rows)
    print(rows_markdown(["modality", "bits_per_byte"], rows))
    print(f"{_summary(scores)}\nwritten to {folder}")
    return 0
