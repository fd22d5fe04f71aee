"""KVEncoder: n prompt tokens + m learned memory slots -> per-layer KV for the m slots.

The encoder runs blocks of the decoder's architecture over [text (n); slots (m)] with a
causal mask, so every slot sees the whole text. For each decoder layer l, the slots' key
and value are read off the hidden state *entering* block l, exactly as block l's attention
would compute them (input RMSNorm -> k_proj / v_proj -> RoPE on the key). Hence the last
block only ever needs its input norm and k/v projections: the rest of it would receive no
gradient, so the encoder does not keep it (no dead parameters under DDP).

Positions (RoPE) of the slots:
- "consistent" (default): text at positions -n..-1, slots at 0..m-1. Attention depends only
  on relative positions, so hidden states equal those of the plain layout, and the keys come
  out rotated for positions 0..m-1: the decoder's text at m.. then sees the memory as a real
  prefix, and the same memory works for any n.
- "paper": text at 0..n-1, slots at n..n+m-1, as in 500xCompressor and AOC, whose keys then
  sit "after" the decoder's text (which starts at m). Reproduces their numbers; memory is
  tied to the n it was trained with.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import rotate_half

from ....hf_compat import mask_cache
from ..memory import MemoryKV


def shallow_clone(module: nn.Module) -> nn.Module:
    """A new module object that shares every parameter and submodule of `module`, but whose
    own submodule table can be changed (e.g. an MLP dropped, a LoRA layer injected) without
    touching the original."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    clone._parameters = dict(module._parameters)
    clone._buffers = dict(module._buffers)
    return clone


class KVReader(nn.Module):
    """The parts of a decoder block that produce its key and value: input norm, k/v proj."""

    def __init__(self, input_layernorm: nn.Module, k_proj: nn.Module, v_proj: nn.Module):
        super().__init__()
        self.input_layernorm = input_layernorm
        self.k_proj = k_proj
        self.v_proj = v_proj


class KVEncoder(nn.Module):
    """Turn `input_ids` [B, n] into a `MemoryKV` with m slots for each decoder layer.

    `blocks` are the first L-1 blocks (LlamaDecoderLayer-like); `last` reads the KV of
    layer L-1 from the output of those blocks.
    """

    def __init__(
        self,
        config,
        embed_tokens: nn.Module,
        rotary_emb: nn.Module,
        blocks: nn.ModuleList,
        last: KVReader,
        memory_tokens: int,
        position_layout: str = "consistent",
        memory_init: str = "embedding_std",
        memory_from_text: bool = False,
        value_gate: bool = False,
    ):
        super().__init__()
        self.memory_from_text = memory_from_text
        # Per-layer scale of the memory's values, starting at 0: the memory is then a harmless
        # attention target at first, and its content arrives as the gates open.
        self.value_gate = nn.Parameter(torch.zeros(config.num_hidden_layers)) if value_gate else None
        self.config = config
        self.embed_tokens = embed_tokens
        self.rotary_emb = rotary_emb
        self.blocks = blocks
        self.last = last
        self.memory_tokens = memory_tokens
        self.position_layout = position_layout
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        weight = embed_tokens.weight
        # (meta tensors, used to count parameters of big configs, have no values)
        embed_std = config.initializer_range if weight.is_meta else weight.detach().float().std().item()
        # embedding_std: slots start like typical token embeddings (the cramming paper's init);
        # normal: N(0, 1) as AOC's torch.randn, several times the scale of any token.
        scale = embed_std if memory_init == "embedding_std" else 1.0
        self.memory = nn.Parameter(torch.randn(memory_tokens, config.hidden_size, device=weight.device) * scale)

    def position_ids(self, n: int, device) -> torch.Tensor:
        m = self.memory_tokens
        start = -n if self.position_layout == "consistent" else 0
        return torch.arange(start, start + n + m, device=device).unsqueeze(0)

    def _read_kv(self, norm, k_proj, v_proj, hidden: torch.Tensor, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
        m, batch = self.memory_tokens, hidden.shape[0]
        x = norm(hidden[:, -m:])
        k = k_proj(x).view(batch, m, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v_proj(x).view(batch, m, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos[:, None, -m:], sin[:, None, -m:]
        return k * cos + rotate_half(k) * sin, v

    def embed(self, input_ids: torch.Tensor, text_start: int = 0) -> torch.Tensor:
        """[tokens; slots] embeddings. With `memory_from_text`, slot i also gets the mean
        embedding of the i-th of m equal chunks of the text (from `text_start`, past a BOS):
        the slots then carry the prompt's words from the first step instead of waiting for
        attention to learn to gather them."""
        text = self.embed_tokens(input_ids)
        slots = self.memory.to(text.dtype).expand(text.shape[0], -1, -1)
        if self.memory_from_text:
            chunks = F.adaptive_avg_pool1d(text[:, text_start:].transpose(1, 2), self.memory_tokens)
            slots = slots + chunks.transpose(1, 2)
        return torch.cat([text, slots], dim=1)

    def block_inputs(self, blocks, hidden: torch.Tensor, position_ids: torch.Tensor) -> list[torch.Tensor]:
        """Hidden states entering each of `blocks` and leaving the last one ([B, S, d] each,
        len(blocks) + 1), for `hidden` placed at `position_ids` [1, S] under a causal mask.
        `blocks` are this encoder's own, or the decoder's (the distillation teacher)."""
        seq = hidden.shape[1]
        cos, sin = self.rotary_emb(hidden, position_ids)
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=None,
            **mask_cache(None),
            # Mask positions are cache slots 0..S-1, whatever the RoPE positions are.
            position_ids=torch.arange(seq, device=hidden.device).unsqueeze(0),
        )
        states = [hidden]
        for block in blocks:
            hidden = block(hidden, attention_mask=mask, position_ids=position_ids, position_embeddings=(cos, sin))
            states.append(hidden)
        return states

    def encode_embeds(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> MemoryKV:
        """KV of the last m positions of `hidden` [B, S, d] placed at `position_ids` [1, S].
        Exposed separately so tests can check it against the decoder's own cache."""
        cos, sin = self.rotary_emb(hidden, position_ids)
        states = self.block_inputs(self.blocks, hidden, position_ids)
        readers = [(b.input_layernorm, b.self_attn.k_proj, b.self_attn.v_proj) for b in self.blocks]
        readers.append((self.last.input_layernorm, self.last.k_proj, self.last.v_proj))
        keys, values = [], []
        for layer, ((norm, k_proj, v_proj), state) in enumerate(zip(readers, states)):
            k, v = self._read_kv(norm, k_proj, v_proj, state, cos, sin)
            keys.append(k)
            values.append(v if self.value_gate is None else v * self.value_gate[layer].to(v.dtype))
        return MemoryKV(keys, values)

    def forward(self, input_ids: torch.Tensor, text_start: int = 0) -> MemoryKV:
        hidden = self.embed(input_ids, text_start)
        return self.encode_embeds(hidden, self.position_ids(input_ids.shape[1], input_ids.device))

    def fading_mlps(self) -> list[FadingMLP]:
        return [block.mlp for block in self.blocks if isinstance(block.mlp, FadingMLP)]

    def set_mlp_scale(self, scale: float) -> None:
        """Scale of every fading MLP; at 0 they are replaced by NoMLP (the AOC encoder)."""
        for block in self.blocks:
            if isinstance(block.mlp, FadingMLP):
                if scale <= 0:
                    block.mlp = NoMLP()
                else:
                    block.mlp.scale = float(scale)

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class FadingMLP(nn.Module):
    """A block's MLP on its way out: x + s * (mlp(x) - x), so s = 1 is the pretrained block and
    s = 0 is AOC's identity (NoMLP). An MLP-free encoder can then start as the full one, whose
    memory the frozen decoder reads from the first step, and lose its MLPs gradually while its
    attention takes over (`model.mlp_fade_steps`); at s = 0 the MLP is dropped for good."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp
        self.scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * (self.mlp(x) - x)


class NoMLP(nn.Module):
    """AOC's replacement for a block's MLP: the identity. The block then computes
    h + attn(norm1(h)) followed by h + norm2(h), as the AOC code does with nn.Identity()."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def decoder_parts(decoder):
    """(embed_tokens, rotary_emb, layers) of a LlamaForCausalLM-like decoder."""
    base = decoder.model
    return base.embed_tokens, base.rotary_emb, base.layers


def last_reader(layer: nn.Module) -> KVReader:
    return KVReader(layer.input_layernorm, layer.self_attn.k_proj, layer.self_attn.v_proj)
