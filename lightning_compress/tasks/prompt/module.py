"""PromptCompressor: train an encoder so a frozen decoder regenerates the prompt from memory KV.

Loss: the decoder reads [BOS] + ids (n tokens) at positions m..m+n after the m memory
slots and is scored by cross-entropy on ids + EOS (n + 1 targets). Every prompt has exactly
n tokens: by default shorter texts are skipped, so no pad reaches the loss; with
`data.pad_to_n` they are padded with EOS and the pads are targets, as the papers train.

Checkpoints hold only the trainable weights plus the decoder's identity (source and weight
fingerprint); `PromptCompressor.load_checkpoint` reloads the decoder from its source.
"""

from __future__ import annotations

import os
import re

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from ...backbone import Backbone, load_configured_backbone
from ...checkpoint_io import CheckpointError, load_checkpoint, stamp_checkpoint
from ...config import ConfigError, merged_config
from ...distributed import gather_objects
from ...metrics import PER_SAMPLE, distinct_rate
from ...optimizers import adamw
from .config import TASK, PromptExperimentConfig
from .encoders import build_encoder
from .generation import greedy_regenerate
from .memory import MemoryKV, decoder_logits


# Entry of a checkpoint written inside the MLP fade: the fading MLPs' scale.
MLP_FADE_KEY = "encoder.mlp_fade_scale"


def target_eos_id(tokenizer, eos_token: str) -> int:
    """The id of `model.eos_token`: "" for the tokenizer's EOS, a token such as
    "<|end_of_text|>" (the papers' 128001 on Llama-3), or a number."""
    if not eos_token:
        return tokenizer.eos_token_id
    if str(eos_token).isdigit() and int(eos_token) < len(tokenizer):
        return int(eos_token)
    token_id = tokenizer.convert_tokens_to_ids(str(eos_token))
    if token_id is None or token_id == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(token_id) != eos_token:
        raise ConfigError(f"model.eos_token={eos_token!r} is not a token of the decoder's tokenizer "
                          f"(its EOS is {tokenizer.eos_token!r}); give a token string or an id below {len(tokenizer)}")
    return token_id


def mlp_fade_scale(step: int, fade_steps: int) -> float:
    """Scale of the fading MLPs for the batch of `step`: 1 -> 0 linearly, 0 from the batch of
    step fade_steps - 1 on, so that the validation after fade_steps batches (the first that
    may become best.ckpt) sees the MLP-free encoder, not one with a trace of MLP left (which
    can still carry the memory: docs/RESULTS.md)."""
    return max(0.0, 1.0 - (step + 1) / fade_steps)


class CheckpointMismatch(CheckpointError):
    """A checkpoint that is fine in itself but does not fit this model or decoder."""


class PromptCompressor(pl.LightningModule):
    def __init__(self, config: dict | DictConfig, backbone: Backbone | None = None):
        super().__init__()
        cfg = OmegaConf.create(config if isinstance(config, dict) else OmegaConf.to_container(config, resolve=True))
        self.cfg = cfg
        self.save_hyperparameters({"config": OmegaConf.to_container(cfg)})
        backbone = backbone or load_configured_backbone(cfg.decoder)
        self.backbone_source, self.backbone_fingerprint = backbone.source, backbone.fingerprint
        self.decoder = backbone.decoder
        self.tokenizer = backbone.tokenizer
        self.bos_token_id = self.tokenizer.bos_token_id
        if self.bos_token_id is None:
            raise ValueError(f"tokenizer of decoder.source={backbone.source!r} has no BOS token")
        # The target after the text (model.eos_token, else the tokenizer's EOS); generation
        # stops at it and at every EOS the decoder knows.
        self.target_eos_id = target_eos_id(self.tokenizer, cfg.model.eos_token)
        self.eos_token_ids = sorted(set(backbone.eos_token_ids) | {self.target_eos_id})
        # Pads of data.pad_to_n: the tokenizer's EOS, as the papers set pad = eos.
        self.pad_token_id = self.tokenizer.eos_token_id
        self.n_tokens, self.memory_tokens = cfg.data.n_tokens, cfg.model.memory_tokens
        self.max_new_tokens = cfg.model.max_new_tokens or self.n_tokens + 8
        context = getattr(self.decoder.config, "max_position_embeddings", None)
        needed = self.memory_tokens + max(self.n_tokens + 1, self.max_new_tokens) + 1
        if context is not None and needed > context:
            raise ValueError(
                f"data.n_tokens={self.n_tokens} with model.memory_tokens={self.memory_tokens} needs {needed} "
                f"positions, beyond the decoder's context of {context} (max_position_embeddings)"
            )
        enc = cfg.model.encoder
        self.encoder = build_encoder(
            enc.name,
            self.decoder,
            memory_tokens=self.memory_tokens,
            position_layout=cfg.model.position_layout,
            train_embeddings=enc.train_embeddings,
            memory_init=cfg.model.memory_init,
            memory_from_text=cfg.model.memory_from_text,
            value_gate=cfg.model.value_gate,
            mlp_fade=cfg.model.mlp_fade_steps > 0,
            lora=OmegaConf.to_container(enc.lora),
        )
        # float32: true mixed precision, what is trained keeps fp32 weights (the optimiser's
        # master copy) even when the frozen decoder is bf16; activations follow
        # trainer.precision. decoder: everything trained in the decoder's dtype (AOC's code).
        # Parameters only: buffers such as RoPE's inv_freq belong to the rotary module the
        # encoder shares with the decoder and stay as transformers keeps them (fp32).
        dtype = torch.float32 if cfg.model.master_weights == "float32" else self.decoder.dtype
        own_copy = enc.name in ("full", "mlp_free")  # frozen copied embeddings too, so dtypes meet
        for param in self.encoder.parameters():
            if param.requires_grad or own_copy:
                param.data = param.data.to(dtype)
        self.strict_loading = False  # checkpoints omit the frozen decoder
        self._val_outputs: list[str] = []
        # The distillation teacher (model.teacher): loaded when training starts, kept outside the
        # module tree so that it is neither trained, wrapped by DDP nor checkpointed.
        self.__dict__["_teacher"] = None

    # The decoder stays in eval mode whatever Lightning asks of the module.
    def train(self, mode: bool = True):
        super().train(mode)
        self.decoder.eval()
        return self

    def compress(self, input_ids: torch.Tensor) -> MemoryKV:
        """Memory KV of prompts [B, n]. With `model.encoder_bos` the encoder reads
        [BOS] + prompt, the start its pretrained blocks expect (ours; the papers' encoders
        read the prompt alone)."""
        return self.encoder(self.encoder_input(input_ids), text_start=int(self.cfg.model.encoder_bos))

    def encoder_input(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not self.cfg.model.encoder_bos:
            return input_ids
        bos = torch.full((input_ids.shape[0], 1), self.bos_token_id, dtype=torch.long, device=input_ids.device)
        return torch.cat([bos, input_ids], dim=1)

    def distill_loss(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Warm-start loss: the encoder's hidden state entering each layer should point where
        the frozen decoder's own does on the same input [text; slots] at the same positions.

        An MLP-free encoder starts far from that (every block adds norm(h) instead of
        MLP(norm(h)); mean cosine ~0.05), so its slot KV are unlike any KV the decoder has
        seen: they capture most of its attention and hurt (docs/RESULTS.md); a full encoder
        starts at zero loss. Directions are compared
        (h / rms(h)), because each KV is read through an RMSNorm: 2 - 2 cos per position,
        averaged over positions and layers. Needs no decoder backward: cheap."""
        encoder = self.encoder
        ids = self.encoder_input(input_ids)
        positions = encoder.position_ids(ids.shape[1], ids.device)
        student = encoder.block_inputs(encoder.blocks, encoder.embed(ids, int(self.cfg.model.encoder_bos)), positions)
        with torch.no_grad():
            text = self.decoder.get_input_embeddings()(ids)
            slots = student[0][:, ids.shape[1]:].detach().to(text.dtype)
            layers = self.decoder.model.layers[: len(encoder.blocks)]
            teacher = encoder.block_inputs(layers, torch.cat([text, slots], dim=1), positions)
        unit = lambda h: h.float() * torch.rsqrt(h.float().pow(2).mean(-1, keepdim=True) + 1e-6)  # noqa: E731
        return sum((unit(s) - unit(t)).pow(2).mean() for s, t in zip(student[1:], teacher[1:])) / (len(student) - 1)

    def load_teacher(self) -> None:
        """The encoder of the `model.teacher` checkpoint, frozen, on this module's device."""
        path = self.cfg.model.teacher
        backbone = Backbone(self.decoder, self.tokenizer, self.backbone_source, self.backbone_fingerprint)
        if not os.path.isfile(path):
            raise ConfigError(f"model.teacher={path!r}: no such checkpoint (train the teacher first, e.g. "
                              "`lcompress train experiments/prompt/full.yaml`)")
        teacher = PromptCompressor.load_checkpoint(path, backbone=backbone)
        for key in ("data.n_tokens", "model.memory_tokens", "model.position_layout", "model.encoder_bos"):
            mine, theirs = OmegaConf.select(self.cfg, key), OmegaConf.select(teacher.cfg, key)
            if mine != theirs:
                raise ConfigError(f"model.teacher={path!r} was trained with {key}={theirs!r}, this run has {mine!r}; "
                                  "its memory KV are not comparable")
        teacher.encoder.requires_grad_(False).eval().to(self.device)
        self.__dict__["_teacher"] = teacher

    def teacher_loss(self, input_ids: torch.Tensor, memory: MemoryKV) -> torch.Tensor:
        """Distance of `memory` to the teacher's memory of the same prompts: per layer, the
        squared error of keys and of values relative to the teacher's mean square (so every
        layer counts alike whatever its scale), averaged over layers."""
        with torch.no_grad():
            target = self._teacher.compress(input_ids)
        terms = [(s.float() - t.float()).pow(2).mean() / t.float().pow(2).mean().clamp_min(1e-12)
                 for s, t in zip(memory.keys + memory.values, target.keys + target.values)]
        return sum(terms) / len(terms)

    def on_fit_start(self) -> None:
        if self.cfg.model.teacher and self._teacher is None:
            self.load_teacher()

    def loss_and_accuracy(self, input_ids: torch.Tensor, memory: MemoryKV | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced loss and token accuracy; pass `memory` to reuse an encoding."""
        batch = input_ids.shape[0]
        memory = self.compress(input_ids) if memory is None else memory
        bos = torch.full((batch, 1), self.bos_token_id, dtype=torch.long, device=input_ids.device)
        eos = torch.full((batch, 1), self.target_eos_id, dtype=torch.long, device=input_ids.device)
        logits = decoder_logits(self.decoder, memory, torch.cat([bos, input_ids], dim=1))
        labels = torch.cat([input_ids, eos], dim=1)
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return loss, accuracy

    def on_train_batch_start(self, batch, batch_idx) -> None:
        fade = self.cfg.model.mlp_fade_steps
        if fade and self.encoder.fading_mlps():
            scale = mlp_fade_scale(self.global_step, fade)
            self.encoder.set_mlp_scale(scale)
            self.log("train/mlp_scale", scale, batch_size=1)

    def curriculum_length(self, n: int, step: int | None = None) -> int:
        """Prompt tokens trained on at `step` (default: this one): memory_tokens -> n over
        model.curriculum_steps, or drawn from memory_tokens..n at every step (model.mixed_lengths)."""
        step = self.global_step if step is None else step
        start = min(self.cfg.model.memory_tokens, n)
        if self.cfg.model.mixed_lengths:
            generator = torch.Generator().manual_seed(step)
            return int(torch.randint(start, n + 1, (1,), generator=generator))
        steps = self.cfg.model.curriculum_steps
        if not steps or step >= steps:
            return n
        return start + (n - start) * step // steps

    def training_step(self, batch, batch_idx):
        input_ids = batch["input_ids"]
        size = input_ids.shape[0]
        if self.global_step < self.cfg.model.distill_steps:
            loss = self.distill_loss(input_ids)
            self.log("train/distill_loss", loss, prog_bar=True, batch_size=size)
            return loss
        if self.cfg.model.curriculum_steps or self.cfg.model.mixed_lengths:
            input_ids = input_ids[:, : self.curriculum_length(input_ids.shape[1])]
            self.log("train/prompt_tokens", float(input_ids.shape[1]), batch_size=size)
        memory = self.compress(input_ids)
        loss, accuracy = self.loss_and_accuracy(input_ids, memory)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/token_accuracy", accuracy, batch_size=size)
        if self.cfg.model.teacher:
            distance = self.teacher_loss(input_ids, memory)
            self.log("train/teacher_loss", distance, prog_bar=True, batch_size=size)
            loss = loss + self.cfg.model.teacher_weight * distance
        if self.cfg.model.distill_weight:
            distill = self.distill_loss(input_ids)
            self.log("train/distill_loss", distill, prog_bar=True, batch_size=size)
            return loss + self.cfg.model.distill_weight * distill
        return loss

    def validation_step(self, batch, batch_idx):
        ids = batch["input_ids"]
        memory = self.compress(ids)  # one encoding for both the loss and the regeneration
        loss, accuracy = self.loss_and_accuracy(ids, memory)
        size = ids.shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("val/token_accuracy", accuracy, batch_size=size, sync_dist=True)
        references = self.decode(ids.tolist())
        candidates = self.regenerate_memory(memory)
        for name, fn in PER_SAMPLE.items():
            score = sum(fn(r, c) for r, c in zip(references, candidates)) / size
            self.log(f"val/{name}", score, batch_size=size, sync_dist=True)
        self._val_outputs.extend(candidates)

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    def on_validation_epoch_end(self) -> None:
        # Over all ranks' regenerations: a collapse (many prompts, one output) shows at the
        # first validation, where BLEU averages it away.
        outputs = [text for rank in gather_objects(self._val_outputs) for text in rank]
        if outputs:
            self.log("val/distinct_outputs", distinct_rate(outputs), batch_size=len(outputs), sync_dist=True)  # equal on every rank

    def decode(self, rows: list[list[int]]) -> list[str]:
        # No clean-up of spaces before punctuation: the text as the tokens spell it, as AOC decodes.
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    @torch.no_grad()
    def regenerate_memory(self, memory: MemoryKV) -> list[str]:
        rows = greedy_regenerate(self.decoder, memory, self.bos_token_id, self.eos_token_ids, self.max_new_tokens)
        return self.decode(rows)

    @torch.no_grad()
    def regenerate(self, input_ids: torch.Tensor) -> list[str]:
        return self.regenerate_memory(self.compress(input_ids))

    def layer_of(self, name: str) -> int | None:
        """The encoder block a trainable parameter belongs to (the token embeddings count as
        block 0, the last layer's KV reader as the last); None for the slots and gates."""
        blocks = self.decoder.config.num_hidden_layers
        if name.startswith("encoder.last."):
            return blocks - 1
        if "embed_tokens" in name:
            return 0
        found = re.search(r"\.(?:blocks|layers)\.(\d+)\.", name)
        return int(found.group(1)) if found else None

    def configure_optimizers(self):
        lr, decay = self.cfg.model.lr, self.cfg.model.layer_lr_decay
        last = self.decoder.config.num_hidden_layers - 1
        by_lr: dict[float, list] = {}
        gates = []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if name.endswith("value_gate"):
                gates.append(param)
                continue
            layer = self.layer_of(name) if decay != 1 else None
            by_lr.setdefault(lr if layer is None else lr * decay ** (last - layer), []).append(param)
        groups = [{"params": params, "lr": group_lr} for group_lr, params in sorted(by_lr.items())]
        # A gate moves ~lr per Adam step; at 10x lr it opens within ~100 steps.
        groups += [{"params": gates, "lr": 10 * lr, "weight_decay": 0.0}] if gates else []
        optimizer = adamw(self, groups, lr=lr, weight_decay=self.cfg.model.weight_decay)
        warmup, distill = max(1, self.cfg.model.warmup_steps), self.cfg.model.distill_steps
        # constant_with_warmup, as both papers: linear ramp over `warmup` steps, then flat. A
        # distillation warm start gets its own ramp, and the regeneration loss a fresh one.
        ramp = lambda step: min(1.0, (step + 1) / warmup)  # noqa: E731
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: ramp(step if step < distill else step - distill))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- checkpoints: trainable weights + decoder identity only -------------------------

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        state = {k: v for k, v in self.state_dict().items() if k in trainable}
        fading = self.encoder.fading_mlps()
        if fading:  # a checkpoint from inside the MLP fade (model.mlp_fade_steps) keeps its scale
            state[MLP_FADE_KEY] = torch.tensor(fading[0].scale)
        return state

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = self.trainable_state_dict()
        stamp_checkpoint(checkpoint, TASK, OmegaConf.to_container(self.cfg),
                         {"source": self.backbone_source, "fingerprint": self.backbone_fingerprint})

    def load_trainable_state(self, state_dict: dict[str, torch.Tensor], origin: str = "checkpoint") -> None:
        if self.encoder.fading_mlps():
            # Written after the fade (no scale stored): the encoder is MLP-free; else mid-fade.
            state_dict = dict(state_dict)
            scale = state_dict.pop(MLP_FADE_KEY, None)
            self.encoder.set_mlp_scale(0.0 if scale is None else float(scale))
        expected = set(self.trainable_state_dict()) - {MLP_FADE_KEY}
        # Mid-fade checkpoints from before the fading MLPs were frozen hold their trained weights.
        fading = {name for name, _ in self.named_parameters() if ".mlp.mlp." in name}
        missing, unexpected = expected - set(state_dict), set(state_dict) - expected - fading
        if missing or unexpected:
            raise CheckpointMismatch(
                f"{origin} does not match this model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
        self.load_state_dict({k: v for k, v in state_dict.items() if k != MLP_FADE_KEY}, strict=False)

    @classmethod
    def load_checkpoint(cls, path: str | os.PathLike, overrides: dict | None = None, backbone: Backbone | None = None):
        """Rebuild a trained compressor: config from the checkpoint, decoder from its source.
        `path` may also be an already loaded `checkpoint_io.Checkpoint`."""
        ckpt = path if not isinstance(path, (str, os.PathLike)) else load_checkpoint(path, task=TASK)
        # Keys added since the checkpoint was written take their defaults (which keep the
        # earlier behaviour).
        cfg = merged_config(PromptExperimentConfig, [(str(ckpt.path), ckpt.config), ("overrides", overrides or {})])
        backbone = backbone or load_configured_backbone(cfg.decoder)
        trained = ckpt.backbone or {}
        if backbone.fingerprint != trained.get("fingerprint"):
            raise CheckpointMismatch(
                f"{ckpt.path} was trained against decoder {trained.get('source')!r} (fingerprint "
                f"{trained.get('fingerprint')}), but decoder.source={backbone.source!r} has fingerprint "
                f"{backbone.fingerprint}; set decoder.source to the training decoder"
            )
        module = cls(cfg, backbone)
        module.load_trainable_state(ckpt.state_dict, origin=str(ckpt.path))
        module.eval()
        return module
