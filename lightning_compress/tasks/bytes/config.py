"""Schema of a byte-level compression experiment file (`task: bytes`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from ...config import ConfigError, TrainedExperiment

TASK = "bytes"
# (hidden size, layers, attention heads): parameters including the 257 x hidden embedding.
SIZES = {
    "tiny": (32, 2, 2),  # 41k: tests
    "small": (128, 4, 4),  # 1.1M: the CPU default
    "base": (256, 8, 8),  # 8.5M
    "large": (384, 10, 8),  # 23.7M: a GPU run
}
MODALITIES = ("text", "images", "audio")


@dataclass
class ByteDataConfig:
    # Each a path, a directory, a glob or a list of them; a modality left empty is not used.
    text: Any = None
    images: Any = None  # Images (PNG, JPEG, ...): a path, directory, glob or list; empty: not used.
    audio: Any = None  # Audio (WAV, FLAC): a path, directory, glob or list; empty: not used.
    chunk_bytes: int = 2048  # Bytes per training sequence (the model's context).
    # Mixing weight of each modality in training (missing: 1).
    weights: dict = field(default_factory=dict)
    # Global batch of chunks per optimiser step; micro_batch_size as for prompts.
    batch_size: int = 8
    micro_batch_size: int = 0  # Chunks per forward pass on one device; 0 = batch_size / world size.
    # Held-out chunks per modality scored at each validation.
    val_chunks: int = 16
    # Per-mille of files (by name hash) held out per modality; a single file: its tail.
    heldout_per_mille: int = 100
    # JSON Lines field read as text.
    text_field: str = "text"
    # gray | rgb; patch [h, w] in pixels.
    image_mode: str = "gray"
    # Image patch [height, width] in pixels, one chunk each.
    image_patch: list = field(default_factory=lambda: [32, 64])
    # 16 (int16 little-endian) or 8 (unsigned, DeepMind's audio bytes).
    audio_bits: int = 16
    num_workers: int = 0  # DataLoader worker processes per device.


@dataclass
class ByteModelConfig:
    # tiny | small | base | large (SIZES above).
    size: str = "small"
    # Key/value heads of attention (grouped-query attention): 0 = one per attention head; fewer
    # shrink the cache the coder reads for every coded byte (1 = a quarter for `small`).
    kv_heads: int = 0
    lr: float = 1.0e-3  # AdamW peak learning rate (cosine decay after warm-up).
    weight_decay: float = 0.01  # AdamW weight decay.
    warmup_steps: int = 100  # Linear warm-up steps.


# Weight dtypes the LM coder records, in the order of the token-coder file's flag values
# (lm_container.DTYPES is this tuple; here so that configs and the CLI check it without torch).
LM_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class CodecBenchConfig:
    # Chunks coded together by the byte model (one batch of the coder).
    batch: int = 64
    # Held-out bytes per modality in the benchmark (files whole while they fit, the last cut).
    max_bytes: int = 131072
    # A pretrained LM coding the held-out text as well (token-level): "" (none), embedded, a hub
    # id, a model directory or a .gguf file; lm_window tokens per window, lm_batch windows at a time.
    lm: str = ""
    lm_window: int = 1024  # Token window of the LM coder (`codecs.lm`): context per coded window.
    lm_batch: int = 16  # Windows coded side by side in one batch by the LM coder.
    lm_dtype: str = "float32"  # The LM's weight dtype: float32 | bfloat16 (faster on CPUs with AMX, GPUs) | float16.


@dataclass
class ByteExperimentConfig(TrainedExperiment):
    task: str = TASK
    name: str = "bytes"
    data: ByteDataConfig = field(default_factory=ByteDataConfig)
    model: ByteModelConfig = field(default_factory=ByteModelConfig)
    codecs: CodecBenchConfig = field(default_factory=CodecBenchConfig)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        if cfg.model.size not in SIZES:
            raise ConfigError(f"model.size={cfg.model.size!r}; expected one of {sorted(SIZES)}")
        heads = SIZES[cfg.model.size][2]
        if not isinstance(cfg.model.kv_heads, int) or cfg.model.kv_heads < 0 or \
                (cfg.model.kv_heads and heads % cfg.model.kv_heads):
            raise ConfigError(f"model.kv_heads={cfg.model.kv_heads!r}; expected 0 (one per head) or a divisor of "
                              f"the {heads} attention heads of model.size={cfg.model.size}")
        if cfg.codecs.lm_dtype not in LM_DTYPES:
            raise ConfigError(f"codecs.lm_dtype={cfg.codecs.lm_dtype!r}; expected one of {list(LM_DTYPES)}")
        if cfg.data.chunk_bytes < 1:
            raise ConfigError(f"data.chunk_bytes must be >= 1, got {cfg.data.chunk_bytes}")
        if not any(cfg.data[m] for m in MODALITIES):
            raise ConfigError("no data: set at least one of data.text, data.images, data.audio (a path, glob or list)")
        unknown = set(cfg.data.weights) - set(MODALITIES)
        if unknown:
            raise ConfigError(f"`data.weights` names {sorted(unknown)}; modalities are text, images, audio")
        if cfg.data.image_mode not in ("gray", "rgb") or cfg.data.audio_bits not in (8, 16):
            raise ConfigError("data.image_mode must be gray or rgb, data.audio_bits 8 or 16")
        if len(cfg.data.image_patch) != 2 or min(cfg.data.image_patch) < 1:
            raise ConfigError(f"data.image_patch={list(cfg.data.image_patch)}; expected [height, width] in pixels")
