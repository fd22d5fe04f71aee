"""`lcompress train <bytes config>`: train a ByteLM on mixed byte chunks (task: bytes).

Same machinery as the prompt runs: global batch over any world size, launcher checks,
resume, atomic trainable checkpoints, TensorBoard with bits/byte per held-out modality.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from data_modules.multimodal_bytes import MultimodalBytesDataModule

from ..config import config_to_dict
from ..distributed import check_launcher
from ..run_dir import plan_run
from ..train import _flat_hparams, make_trainer, rank_zero_print, trainer_kwargs
from .model import ByteLM


def byte_datamodule(cfg: DictConfig) -> MultimodalBytesDataModule:
    d = cfg.data
    return MultimodalBytesDataModule(
        text=d.text, images=d.images, audio=d.audio, chunk_bytes=d.chunk_bytes, weights=dict(d.weights),
        batch_size=d.batch_size, val_chunks=d.val_chunks, heldout_per_mille=d.heldout_per_mille,
        text_field=d.text_field, image_mode=d.image_mode, image_patch=list(d.image_patch), audio_bits=d.audio_bits,
        num_workers=d.num_workers, seed=cfg.seed,
    )


def train_bytes(cfg: DictConfig, callbacks: list | None = None) -> dict:
    kwargs = trainer_kwargs(cfg)
    check_launcher(kwargs)
    datamodule = byte_datamodule(cfg)  # missing files fail here, before anything else
    version, resume_from = plan_run(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    m = cfg.model
    model = ByteLM(m.size, cfg.data.chunk_bytes, m.lr, m.weight_decay, m.warmup_steps, kwargs["max_steps"],
                   config=config_to_dict(cfg))
    modalities = ", ".join(f"{k} ({len(v)} files)" for k, v in datamodule.files.items())
    rank_zero_print(f"ByteLM {m.size}: {model.parameter_count():,} parameters; data: {modalities}")
    logger = TensorBoardLogger(save_dir=cfg.output_dir, name=cfg.name, version=version, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    trainer, best = make_trainer(cfg, kwargs, logger, "val/bits_per_byte", callbacks or [], datamodule, resume_from, refresh=10)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    if not trainer.is_global_zero:
        return {}
    scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    logger.log_hyperparams(_flat_hparams(cfg), {f"final/{k[4:]}": v for k, v in scores.items()})
    checkpoint = best.best_model_path or best.last_model_path
    rank_zero_print("held-out bits/byte: " + ", ".join(f"{k[len('val/bits_per_byte/'):] or 'mean'} {v:.3f}"
                                                       for k, v in sorted(scores.items())))
    rank_zero_print(f"checkpoint: {checkpoint}\nnext: lcompress compress FILE FILE.lcbz --model {checkpoint}\n"
                    f"      lcompress bench-codecs --model {checkpoint}")
    return {"checkpoint": checkpoint, "run_dir": str(run_dir), "metrics": scores}
