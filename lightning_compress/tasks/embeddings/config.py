"""Schema of an embedding-compression experiment (`task: embeddings`, `lcompress embed-compress`):
a model's token-embedding matrix factored at several compression ratios by truncated SVD, a
token-frequency-weighted SVD and the cosine-direction autoencoder of "Direction is what you
need", each put back into the LM and scored by perplexity on held-out text."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from ...config import ConfigError, DecoderConfig, ExperimentBase, HashSplitConfig

TASK = "embeddings"
METHODS = ("svd", "svd_weighted", "autoencoder", "autoencoder_weighted")


@dataclass
class EmbedDataConfig(HashSplitConfig):
    # source, text_field, hub_split, val_per_mille, test_per_mille: config.HashSplitConfig. Of
    # the hash split, val selects the autoencoder's epoch, test is reported and train gives the
    # token frequencies of the weighted methods.

    # Texts scored per split, each cut to max_tokens tokens.
    test_texts: int = 60
    val_texts: int = 16  # Validation texts (choose the autoencoder's epoch).
    max_tokens: int = 128  # Each text is cut to this many tokens.
    # Texts per forward pass when scoring.
    batch_size: int = 8


@dataclass
class AutoencoderConfig:
    # The paper's code: loss = cos_weight * (1 - cos) + lp_weight * mean |x_hat - x|^p with p
    # annealed linearly from p_start to p_end over the epochs; Adam, StepLR(step, gamma).
    epochs: int = 20
    batch_size: int = 256  # Embedding rows per optimiser step.
    lr: float = 1.0e-3  # Adam learning rate.
    lr_step_epochs: int = 4  # StepLR: multiply the learning rate by lr_gamma every this many epochs.
    lr_gamma: float = 0.5  # StepLR factor.
    cos_weight: float = 0.1995  # Weight of the cosine term (1 - cos).
    lp_weight: float = 0.0025  # Weight of the L^p term mean |x_hat - x|^p.
    p_start: float = 1.0  # p of the L^p term at the first epoch.
    p_end: float = 0.1  # p of the L^p term at the last epoch.
    # Start from the (mean-centred) truncated SVD instead of a random init.
    svd_init: bool = True
    # Validation perplexity (val split, input mode) every this many epochs picks the best epoch.
    val_every_epochs: int = 5


@dataclass
class EmbedConfig:
    # Compression ratios vocab*d / stored parameters (codes + decoder + bias), each > 1.
    ratios: list = field(default_factory=lambda: [1.5, 2.0, 4.0, 10.0])
    # Any of svd | svd_weighted | autoencoder (the paper: every row counts the same) |
    # autoencoder_weighted (beyond the paper: each row's loss weighted by its token frequency,
    # started from svd_weighted).
    methods: list = field(default_factory=lambda: list(METHODS))
    # svd_weighted, autoencoder_weighted: row i weighted by (count_i + 1) ** frequency_power,
    # counts on the train split.
    frequency_power: float = 1.0
    # Texts of the train split counted for the frequencies (0: all of them).
    frequency_texts: int = 0
    # The mode a file written with --save is loaded in: tied (input and head, the real saving) | input.
    save_mode: str = "tied"
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)


@dataclass
class EmbedExperimentConfig(ExperimentBase):
    task: str = TASK
    name: str = "embed_compress"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    data: EmbedDataConfig = field(default_factory=EmbedDataConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        e, d = cfg.embed, cfg.data
        if not e.ratios or any(not isinstance(r, (int, float)) or r <= 1 for r in e.ratios):
            raise ConfigError(f"embed.ratios={list(e.ratios)}: expected a non-empty list of compression ratios > 1")
        unknown = [m for m in e.methods if m not in METHODS]
        if not e.methods or unknown:
            raise ConfigError(f"embed.methods={list(e.methods)}: expected a non-empty subset of {list(METHODS)}")
        if e.save_mode not in ("input", "tied"):
            raise ConfigError(f"embed.save_mode={e.save_mode!r}; expected input or tied")
        for key in ("test_texts", "val_texts", "max_tokens", "batch_size"):
            if d[key] < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {d[key]}")
        if d.max_tokens < 2:
            raise ConfigError("data.max_tokens must be >= 2 (a text needs a next token)")
        HashSplitConfig.check_split(d)
        if not (d.val_per_mille and d.test_per_mille):
            raise ConfigError("data.val_per_mille and data.test_per_mille must be > 0: the autoencoder is selected "
                              "on val and every method reported on test")
        a = e.autoencoder
        for key in ("epochs", "batch_size", "lr_step_epochs", "val_every_epochs"):
            if a[key] < 1:
                raise ConfigError(f"embed.autoencoder.{key} must be >= 1, got {a[key]}")
        if a.lr <= 0 or a.cos_weight < 0 or a.lp_weight < 0 or a.cos_weight + a.lp_weight == 0:
            raise ConfigError("embed.autoencoder: lr must be > 0, cos_weight and lp_weight >= 0 and not both 0")
        if a.p_start <= 0 or a.p_end <= 0:
            raise ConfigError("embed.autoencoder.p_start and p_end must be > 0")
