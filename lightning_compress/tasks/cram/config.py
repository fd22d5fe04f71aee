"""Schema of a cramming experiment file (`task: cram`): k input vectors optimised per text
until a frozen LM regenerates the text ("Cramming 1568 Tokens into a Single Vector").
Defaults follow the paper's code (AdamW lr 1e-2, betas (0.9, 0.9), weight decay 0.01,
up to 5000 steps, init randn x std(embedding))."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from ...config import ConfigError, DecoderConfig, ExperimentBase, TextSourceConfig

TASK = "cram"
MODES = ("full", "progressive")


@dataclass
class CramDecoderConfig(DecoderConfig):
    # "auto": bfloat16 on a GPU, float32 on a CPU; or float32 | bfloat16 | float16.
    dtype: str = "auto"


@dataclass
class CramDataConfig(TextSourceConfig):
    # source, text_field, hub_split: config.TextSourceConfig.
    # Texts crammed (the first ones of the source with at least cram.length tokens).
    num_texts: int = 16
    # Texts of the source passed over before the first one used (another set of texts).
    skip_texts: int = 0
    # The paper's control: texts of uniformly random token ids (no special tokens) instead.
    random_tokens: bool = False


@dataclass
class CramConfig:
    # Tokens per text (each text is cut to exactly this many; shorter texts are skipped).
    length: int = 32
    # k: memory vectors per text, prepended to the input embeddings.
    vectors: int = 1
    # full: the paper, all tokens at once | progressive: grow the target one token at a
    # time, moving on only once greedy decoding reproduces the prefix.
    mode: str = "full"
    # Optimisation steps per text at most.
    max_steps: int = 5000
    # Texts optimised together (each row its own vectors, optimiser state and stopping).
    batch_size: int = 16
    lr: float = 1.0e-2  # AdamW learning rate of the vectors (the paper: 1e-2).
    betas: list = field(default_factory=lambda: [0.9, 0.9])  # AdamW betas (the paper: 0.9, 0.9).
    weight_decay: float = 0.01  # AdamW weight decay (the paper: 0.01).
    # Stop a text whose best accuracy has not improved for this many steps (0: never).
    patience: int = 0
    # What is given before the first predicted token (the paper's code: the first token of the
    # tokenized text, which is BOS for tokenizers that add one, e.g. Llama's, and the text's first
    # token for those that do not, e.g. Pythia's and SmolLM2's). auto: as the tokenizer does |
    # true: BOS before the text (all L tokens predicted) | false: the text's first token given.
    bos: Any = "auto"


@dataclass
class CramExperimentConfig(ExperimentBase):
    task: str = TASK
    name: str = "cram"
    decoder: CramDecoderConfig = field(default_factory=CramDecoderConfig)
    data: CramDataConfig = field(default_factory=CramDataConfig)
    cram: CramConfig = field(default_factory=CramConfig)
    # false | true (continue the latest run of this name, skipping finished texts) | auto.
    resume: Any = False

    @staticmethod
    def check(cfg: DictConfig) -> None:
        c = cfg.cram
        if c.vectors < 1:
            raise ConfigError(f"cram.vectors={c.vectors}: the number of memory vectors k must be >= 1")
        if c.length < 2:
            raise ConfigError(f"cram.length={c.length}: a text needs at least 2 tokens")
        if c.mode not in MODES:
            raise ConfigError(f"cram.mode={c.mode!r}; expected one of {MODES}")
        for key in ("max_steps", "batch_size"):
            if c[key] < 1:
                raise ConfigError(f"cram.{key} must be >= 1, got {c[key]}")
        if cfg.data.num_texts < 1 or cfg.data.skip_texts < 0:
            raise ConfigError("data.num_texts must be >= 1 and data.skip_texts >= 0")
        if len(c.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in c.betas):
            raise ConfigError(f"cram.betas={list(c.betas)}; expected [beta1, beta2] in [0, 1)")
        if c.lr <= 0 or c.patience < 0:
            raise ConfigError("cram.lr must be > 0 and cram.patience >= 0")
        if c.bos not in (False, True, "auto"):
            raise ConfigError(f"cram.bos={c.bos!r}; expected auto, true or false")
        if cfg.resume not in (False, True, "auto"):
            raise ConfigError(f"resume={cfg.resume!r}; expected false, true or auto")
        if cfg.decoder.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"decoder.dtype={cfg.decoder.dtype!r}; expected auto, float32, bfloat16 or float16")
