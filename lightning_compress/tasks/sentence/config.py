"""Schema of a sentence-autoencoder experiment (`task: sentence`): "Tiny Transformers Excel at
Sentence Compression" - an encoder of 1-3 layers pools a sentence into ONE vector, a decoder of
as many layers regenerates the sentence from that vector alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from ...config import ConfigError, HashSplitConfig, TrainedExperiment

TASK = "sentence"
POOLINGS = ("mean", "query", "first")
CONDITIONINGS = ("first", "every")
VOCABULARIES = ("tokenizer", "seen")
PRECISIONS = ("float32", "float16", "bfloat16", "int8")
MAX_LAYERS = 12


@dataclass
class SentenceDataConfig(HashSplitConfig):
    # source, text_field, hub_split, val_per_mille, test_per_mille: config.HashSplitConfig
    # (the hash is of each sentence). Any text, JSON Lines, or MediaWiki XML file works.

    # Tokenizer: "embedded" (SmolLM2's 49k BPE), any tokenizer directory / hub id, or "bytes" (UTF-8).
    tokenizer: str = "embedded"
    # Sentences of min_tokens..max_tokens tokens are used; the others are counted and passed over.
    min_tokens: int = 4
    max_tokens: int = 32  # the longest sentence used, in tokens
    # Global batch (sentences per optimiser step over all devices) and per-device micro-batch (0: no accumulation).
    batch_size: int = 64
    micro_batch_size: int = 0  # per-device sentences per forward pass (0: batch_size / world size)
    # Sentences scored at each validation and at the final test.
    val_size: int = 256
    test_size: int = 512  # test sentences scored after training and by `lcompress eval`
    # Training sentences are shuffled in a buffer of this many per shard (0: source order).
    shuffle_buffer: int = 2048
    num_workers: int = 0  # DataLoader worker processes per device.


@dataclass
class SentenceModelConfig:
    # Transformer layers of the encoder and, as many, of the decoder (the paper: 1-3).
    layers: int = 1
    # Model width = the size of the sentence vector (768 float32 values = 3 KB).
    width: int = 512
    heads: int = 8  # Attention heads.
    # Feed-forward width = ffn_mult x width.
    ffn_mult: int = 4
    dropout: float = 0.0  # Dropout in the transformer layers.
    # How the encoder's outputs become one vector: mean (masked mean) | query (a learned query
    # attends over them) | first (the first token's output).
    pooling: str = "mean"
    # How the decoder receives the vector: first (as its first input only) | every (also added,
    # through a learned linear map, to every decoder input; learned faster in a 300-step CPU test).
    conditioning: str = "every"
    # Output vocabulary: tokenizer (all its ids) | seen (only the tokens of the training sentences
    # read by vocabulary_scan, plus one UNK that is never generated; a smaller head, faster on CPU).
    vocabulary: str = "tokenizer"
    # Training sentences read to find the seen tokens (0: the whole training split).
    vocabulary_scan: int = 0
    # Storage precision of the vector: float32 | float16 | bfloat16 | int8 (per-vector scale).
    # Applied at evaluation; with quantization_aware also in training (straight-through).
    precision: str = "float32"
    quantization_aware: bool = False  # also round the vector in training (straight-through)
    # Input embedding and output head share their matrix (halves the vocabulary's parameters).
    tie_embeddings: bool = True
    lr: float = 1.0e-3  # AdamW peak learning rate (cosine decay after warm-up).
    weight_decay: float = 0.01  # AdamW weight decay (matrices only).
    warmup_steps: int = 200  # Linear warm-up steps.


@dataclass
class SentenceEvalConfig:
    # Precisions the final evaluation decodes at (accuracy vs bytes per vector).
    precisions: list = field(default_factory=lambda: list(PRECISIONS))
    # Regenerations shown in TensorBoard and printed.
    num_samples: int = 8
    # Points of the latent interpolation between two test sentences (TensorBoard table).
    interpolation_steps: int = 5
    # `lcompress eval` split: test (of the training data) | all (every sentence of data.source).
    split: str = "test"


@dataclass
class SentenceExperimentConfig(TrainedExperiment):
    task: str = TASK
    name: str = "sentence_ae"
    data: SentenceDataConfig = field(default_factory=SentenceDataConfig)
    model: SentenceModelConfig = field(default_factory=SentenceModelConfig)
    eval: SentenceEvalConfig = field(default_factory=SentenceEvalConfig)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        m, d = cfg.model, cfg.data
        if not 1 <= m.layers <= MAX_LAYERS:
            raise ConfigError(f"model.layers={m.layers}: expected 1..{MAX_LAYERS} (the paper: 1-3)")
        if m.width < 8 or m.heads < 1 or m.width % m.heads:
            raise ConfigError(f"model.width={m.width}, model.heads={m.heads}: the width must be >= 8 and a multiple of heads")
        if m.pooling not in POOLINGS:
            raise ConfigError(f"model.pooling={m.pooling!r}; expected one of {POOLINGS}")
        if m.conditioning not in CONDITIONINGS:
            raise ConfigError(f"model.conditioning={m.conditioning!r}; expected one of {CONDITIONINGS}")
        if m.vocabulary not in VOCABULARIES:
            raise ConfigError(f"model.vocabulary={m.vocabulary!r}; expected one of {VOCABULARIES}")
        if m.vocabulary_scan < 0:
            raise ConfigError(f"model.vocabulary_scan={m.vocabulary_scan}; expected >= 0 (0: the whole training split)")
        bad = [p for p in [m.precision, *cfg.eval.precisions] if p not in PRECISIONS]
        if bad:
            raise ConfigError(f"precision {bad[0]!r} (model.precision / eval.precisions); expected one of {PRECISIONS}")
        if not 1 <= d.min_tokens <= d.max_tokens:
            raise ConfigError(f"data.min_tokens={d.min_tokens}, data.max_tokens={d.max_tokens}: expected 1 <= min <= max")
        HashSplitConfig.check_split(d)
        for key in ("val_size", "test_size"):
            if d[key] < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {d[key]}")
        if cfg.eval.split not in ("test", "all"):
            raise ConfigError(f"eval.split={cfg.eval.split!r}; expected test or all")
        for key, ok, expected in (("ffn_mult", m.ffn_mult >= 1, ">= 1"), ("dropout", 0 <= m.dropout < 1, "in [0, 1)"),
                                  ("lr", m.lr > 0, "> 0")):
            if not ok:
                raise ConfigError(f"model.{key}={m[key]!r}; expected {expected}")
