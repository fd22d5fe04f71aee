"""Schema of a prompt-compression experiment file (`task: prompt`, the default task)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from ...config import ConfigError, DecoderConfig, HashSplitConfig, TrainedExperiment

TASK = "prompt"
ENCODER_NAMES = ("full", "mlp_free", "lora", "lora_mlp_free")
POSITION_LAYOUTS = ("consistent", "paper")
MEMORY_INITS = ("embedding_std", "normal")
MASTER_WEIGHTS = ("float32", "decoder")


@dataclass
class LoraConfig:
    r: int = 64  # LoRA rank.
    alpha: int = 32  # LoRA scale numerator (scale = alpha / r).
    dropout: float = 0.05  # LoRA dropout.
    # Linear layers that get LoRA adapters.
    target_modules: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class EncoderConfig:
    name: str = "mlp_free"  # full | mlp_free | lora | lora_mlp_free (README "Encoders").
    # Train the encoder's own copy of the token embeddings (AOC does); ignored by LoRA encoders.
    train_embeddings: bool = True
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    memory_tokens: int = 4  # m: memory slots; the prompt is compressed into their per-layer KV (ratio n / m).
    position_layout: str = "consistent"  # consistent (slot keys at positions 0..m-1) | paper (500x/AOC layout).
    # The encoder reads [BOS] + prompt (ours: the start its pretrained blocks were trained on);
    # the papers' encoders read the prompt alone (add_special_tokens=False): false.
    encoder_bos: bool = True
    # Initial memory slots: embedding_std (randn x std of the token embeddings, the cramming
    # paper's init; ours) | normal (randn, N(0, 1), as AOC's code).
    memory_init: str = "embedding_std"
    # Target after the text, and a generation stop: "" = the tokenizer's EOS; a token string
    # ("<|end_of_text|>": the papers' 128001 on Llama-3) or an id.
    eos_token: str = ""
    # Dtype of the trained weights: float32 (fp32 master weights beside a bf16 decoder, true
    # mixed precision) | decoder (the decoder's dtype: pure bf16 with a bf16 decoder, AOC's code).
    master_weights: str = "float32"
    # Add to each slot's input the mean embedding of its 1/m chunk of the prompt (ours; the
    # papers' slots are learned embeddings alone).
    memory_from_text: bool = False
    # Scale each layer's memory values by a learned gate that starts at 0 (trained at 10x lr):
    # the memory starts as a harmless attention target instead of garbage the decoder learns
    # to ignore (ours; not in the papers).
    value_gate: bool = False
    # MLP-free encoders: start with the decoder's MLPs and fade them out linearly over this
    # many steps (x + s (mlp(x) - x), s: 1 -> 0); from then on the encoder is exactly AOC's,
    # and only then may a checkpoint become best.ckpt (ours; 0: the papers' start).
    mlp_fade_steps: int = 0
    # Short prompts first: over the first this many steps the encoder compresses only the first
    # k tokens of each prompt, k growing linearly from memory_tokens (a slot per token, where
    # the memory is plainly worth reading) to n; validation always uses n (ours; 0: off).
    curriculum_steps: int = 0
    # Mixed lengths: every training step compresses the first k tokens of its prompts, k drawn
    # uniformly from memory_tokens..n by a generator seeded with the step (a resumed run draws
    # the same k); short prompts, where the memory is plainly worth reading, stay in the mix
    # while the long ones are learned. Validation always uses n (ours; false: off).
    mixed_lengths: bool = False
    lr: float = 5e-4  # AdamW learning rate (AOC: 5e-4).
    # Warm start: the first this many steps train the encoder to match the frozen decoder's
    # per-layer hidden states (PromptCompressor.distill_loss) instead of regenerating.
    distill_steps: int = 0
    # After the warm start, the same loss x this weight is added to the regeneration loss
    # (keeps the encoder's states near the decoder's while it learns; 0: off).
    distill_weight: float = 0.0
    # Distil a trained encoder's memory: the checkpoint of a prompt run against the same decoder
    # with the same n, m, slot layout and encoder input (e.g. a short run of the `full`
    # encoder, which the decoder reads after ~100 steps). Each training step adds
    # teacher_weight x the distance between this encoder's memory KV and the teacher's on the
    # same prompts (PromptCompressor.teacher_loss), so the memory is pulled toward one the
    # decoder already reads. Read during training only; checkpoints do not hold it (ours; "": off).
    teacher: str = ""
    teacher_weight: float = 1.0  # Weight of the teacher distance in the training loss (with model.teacher).
    # Layer-wise learning rates: block l of an L-block encoder trains at lr x decay^(L-1-l), its
    # token embeddings as block 0, the memory slots and gates at lr (layer-wise lr decay, as in
    # BERT fine-tuning). Below 1 it lets the deep blocks, whose memory an MLP-free encoder gets
    # wrong (docs/RESULTS.md), move fast while the early ones stay put (ours; 1: one lr).
    layer_lr_decay: float = 1.0
    weight_decay: float = 0.0  # AdamW weight decay.
    warmup_steps: int = 30  # Linear warm-up steps before the constant learning rate.
    # Greedy regeneration length limit in tokens; 0 means n_tokens + 8.
    max_new_tokens: int = 0


@dataclass
class DataConfig(HashSplitConfig):
    # source, text_field, hub_split, val_per_mille, test_per_mille: config.HashSplitConfig.

    # n: every prompt is exactly this many tokens (the ratio is n / m).
    n_tokens: int = 32
    # Texts shorter than n: false skips (and counts) them; true pads them with the pad token
    # (= EOS) up to n, and the pads are targets, as 500xCompressor and AOC train.
    pad_to_n: bool = False
    # Training texts pass through a seeded shuffle buffer of this many per shard (0: file order).
    shuffle_buffer: int = 1024
    # Validation / test from their own files (every record) instead of by hash from `source`;
    # "" = the hash split. The papers test on abstracts from a later period than training.
    val_source: str = ""
    test_source: str = ""  # the same for the test split
    val_size: int = 32  # Validation prompts scored at each validation (loss, BLEU, exact and prefix match).
    # Global batch: prompts per optimiser step over all devices and nodes.
    batch_size: int = 8
    # Prompts per forward pass on one device; 0 = batch_size / world size (no accumulation).
    micro_batch_size: int = 0
    num_workers: int = 0  # DataLoader worker processes per device.


@dataclass
class EvalConfig:
    # train | val | test (by text hash) | all (every record of data.source).
    split: str = "test"
    num_samples: int = 64  # Held-out prompts regenerated and scored after training and by `lcompress eval`.
    batch_size: int = 16  # Prompts per regeneration batch.


@dataclass
class CallbackConfig:
    # Fixed validation prompts shown as reference vs regeneration in TensorBoard.
    num_samples: int = 4
    # Points of the latent interpolation table (both ends included); 0 disables it.
    interpolation_points: int = 5


@dataclass
class PromptExperimentConfig(TrainedExperiment):
    task: str = TASK
    name: str = "aoc"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    callbacks: CallbackConfig = field(default_factory=CallbackConfig)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        if cfg.model.encoder.name not in ENCODER_NAMES:
            raise ConfigError(f"model.encoder.name={cfg.model.encoder.name!r}; expected one of {ENCODER_NAMES}")
        if cfg.model.position_layout not in POSITION_LAYOUTS:
            raise ConfigError(f"model.position_layout={cfg.model.position_layout!r}; expected one of {POSITION_LAYOUTS}")
        if cfg.model.memory_init not in MEMORY_INITS:
            raise ConfigError(f"model.memory_init={cfg.model.memory_init!r}; expected one of {MEMORY_INITS}")
        if cfg.model.master_weights not in MASTER_WEIGHTS:
            raise ConfigError(f"model.master_weights={cfg.model.master_weights!r}; expected one of {MASTER_WEIGHTS}")
        if cfg.model.mlp_fade_steps < 0:
            raise ConfigError(f"model.mlp_fade_steps must be >= 0, got {cfg.model.mlp_fade_steps}")
        if cfg.model.mlp_fade_steps and not cfg.model.encoder.name.endswith("mlp_free"):
            raise ConfigError(f"model.mlp_fade_steps fades out the MLPs of an MLP-free encoder; "
                              f"model.encoder.name={cfg.model.encoder.name!r} keeps its MLPs")
        if cfg.model.mlp_fade_steps and cfg.model.mlp_fade_steps >= OmegaConf.select(cfg, "trainer.max_steps", default=0):
            raise ConfigError(f"model.mlp_fade_steps={cfg.model.mlp_fade_steps} must end before trainer.max_steps="
                              f"{OmegaConf.select(cfg, 'trainer.max_steps', default=None)}, or no step trains the MLP-free encoder")
        max_steps = OmegaConf.select(cfg, "trainer.max_steps", default=-1)
        if cfg.model.curriculum_steps < 0 or (cfg.model.curriculum_steps and 0 < max_steps <= cfg.model.curriculum_steps):
            raise ConfigError(f"model.curriculum_steps={cfg.model.curriculum_steps}: expected 0 (off) or a number of "
                              f"steps below trainer.max_steps={max_steps}")
        if cfg.model.mixed_lengths and cfg.model.curriculum_steps:
            raise ConfigError("model.mixed_lengths and model.curriculum_steps both choose the prompt length of a "
                              "training step; set one of them")
        if cfg.model.distill_steps < 0 or cfg.model.distill_weight < 0:
            raise ConfigError("model.distill_steps and model.distill_weight must be >= 0, got "
                              f"{cfg.model.distill_steps} and {cfg.model.distill_weight}")
        if not 0 < cfg.model.layer_lr_decay <= 1:
            raise ConfigError(f"model.layer_lr_decay must be in (0, 1] (1: one learning rate), got {cfg.model.layer_lr_decay}")
        if cfg.model.teacher_weight < 0:
            raise ConfigError(f"model.teacher_weight must be >= 0, got {cfg.model.teacher_weight}")
        if cfg.data.shuffle_buffer < 0:
            raise ConfigError(f"data.shuffle_buffer must be >= 0, got {cfg.data.shuffle_buffer}")
        if cfg.model.max_new_tokens < 0:
            raise ConfigError(f"model.max_new_tokens must be >= 0 (0: n_tokens + 8), got {cfg.model.max_new_tokens}")
        for key in ("model.memory_tokens", "data.n_tokens", "eval.batch_size", "eval.num_samples"):  # data.batch_size: the base check
            if OmegaConf.select(cfg, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {OmegaConf.select(cfg, key)}")
        HashSplitConfig.check_split(cfg.data)
        if cfg.eval.split not in ("train", "val", "test", "all"):
            raise ConfigError(f"eval.split={cfg.eval.split!r}; expected train, val, test or all")
