"""A lean incremental forward for Llama-architecture decoders: one token per sequence per call.

Entropy coding with a language model runs the model one position at a time for a batch of
sequences, thousands of times. Through the general transformers stack each such step costs
a fixed ~3 ms of Python, mask building and cache bookkeeping, and a static cache makes every
step attend over the whole preallocated length. `LlamaStepper` computes the same function
with the model's own weights and a handful of tensor operations per layer:

- q, k and v come from one fused matmul, gate and up from another;
- RoPE is read from a table of the model's own rotary embedding (cos/sin for every position,
  computed once by the model's `rotary_emb`, so rope scaling and attention scaling are its own)
  and applied to q and k together with one gather;
- keys and values are written into a preallocated cache [B, kv heads, T, head dim] and the
  step attends over positions 0..p only (a view, no copy), not over T;
- grouped-query attention without repeating the cache: the G query heads that share a kv
  head are laid out as G query rows of that head ([B, kv heads, G, head dim]); every cached
  position is visible to a single new token, so no mask is needed;
- the output head keeps only the first `vocab` rows (a byte model scores 256 of its 257 ids).

Its logits equal the transformers forward up to float rounding (tested), not bit for bit:
a coder must therefore encode and decode with the same stepper, which the containers record.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

SUPPORTED_MODEL_TYPES = ("llama",)


def supports(model) -> bool:
    """True for a decoder this stepper reproduces: a plain Llama (no biases, SiLU MLP)."""
    config = getattr(model, "config", None)
    return (
        getattr(config, "model_type", None) in SUPPORTED_MODEL_TYPES
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "hidden_act", "silu") == "silu"
    )


class _Layer:
    """One decoder layer's weights, fused for a single-token step: [q k v] in one matmul,
    [gate up] in another, each weight transposed once here rather than at every step."""

    def __init__(self, layer):
        attention, mlp = layer.self_attn, layer.mlp
        self.projection = torch.cat([attention.q_proj.weight, attention.k_proj.weight,
                                     attention.v_proj.weight]).detach().T.contiguous()
        self.qk_size = attention.q_proj.weight.shape[0] + attention.k_proj.weight.shape[0]
        self.out = attention.o_proj.weight.detach().T.contiguous()
        self.gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach().T.contiguous()
        self.down = mlp.down_proj.weight.detach().T.contiguous()
        self.norm_attention = layer.input_layernorm.weight.detach()
        self.norm_mlp = layer.post_attention_layernorm.weight.detach()


class LlamaWeights:
    """A decoder's weights laid out for single-token steps. Fusing copies every weight (0.55 s
    and the model's size again for SmolLM2-135M), so a coder builds this once per file and
    every stepper over it (one per batch of sequences) shares it.

    `vocab`: rows of the output head to score (default: all)."""

    def __init__(self, model, vocab: int | None = None):
        if not supports(model):
            raise ValueError(f"LlamaStepper reproduces plain Llama decoders, not {type(model).__name__} "
                             f"(model_type {getattr(model.config, 'model_type', None)!r})")
        config = model.config
        self.rotary_emb = model.model.rotary_emb
        self.eps = config.rms_norm_eps
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.embedding = model.model.embed_tokens.weight.detach()
        self.layers = [_Layer(layer) for layer in model.model.layers]
        self.final_norm = model.model.norm.weight.detach()
        self.head = model.lm_head.weight.detach()[: vocab or config.vocab_size].T.contiguous()


class LlamaStepper:
    """Next-token logits [B, vocab] for a batch of sequences, one position per `step`.

    `model`: the decoder, or its `LlamaWeights` (shared between steppers). `length`: the
    longest sequence (cache size). `vocab`: rows of the output head to score (default: all;
    a `LlamaWeights` has its own)."""

    def __init__(self, model, batch: int, length: int, vocab: int | None = None):
        weights = model if isinstance(model, LlamaWeights) else LlamaWeights(model, vocab)
        self.eps, self.heads, self.kv_heads, self.head_dim = weights.eps, weights.heads, weights.kv_heads, weights.head_dim
        self.group = self.heads // self.kv_heads
        self.scale = self.head_dim ** -0.5
        self.embedding, self.layers = weights.embedding, weights.layers
        self.final_norm, self.head = weights.final_norm, weights.head
        device, dtype = self.embedding.device, self.embedding.dtype
        with torch.no_grad():
            positions = torch.arange(max(1, length), device=device).unsqueeze(0)
            cos, sin = weights.rotary_emb(self.embedding[:1].unsqueeze(0), positions)
        # RoPE rotates pairs (i, i + D/2) of each head: rope(x) = x * cos + rotate_half(x) * sin,
        # rotate_half(x) = [-x2, x1]. Over q and k together ([B, (heads + kv heads) * D]) that is
        # x * cos + x[:, swap] * signed_sin, with swap exchanging the halves of every head and
        # the sign of rotate_half folded into the sin table: one gather, no extra matmul.
        tiles = self.heads + self.kv_heads
        half = self.head_dim // 2
        within = torch.cat([torch.arange(half, self.head_dim), torch.arange(half)])
        self.swap = (within + self.head_dim * torch.arange(tiles).unsqueeze(1)).reshape(-1).to(device)
        sign = torch.cat([-torch.ones(half), torch.ones(half)]).to(device=device, dtype=dtype)
        self.cos = cos[0].to(dtype).repeat(1, tiles).contiguous()
        self.sin = (sin[0].to(dtype) * sign).repeat(1, tiles).contiguous()
        shape = (batch, self.kv_heads, max(1, length), self.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in self.layers]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in self.layers]
        self.batch, self.length, self.position = batch, length, 0

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # RMSNorm as transformers' LlamaRMSNorm (computed in the model's dtype: float32 here).
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    def _attention(self, x: torch.Tensor, layer: _Layer, index: int) -> torch.Tensor:
        B, p, n = x.shape[0], self.position, layer.qk_size
        projected = x @ layer.projection
        qk = projected[:, :n]
        qk = qk * self.cos[p] + qk.index_select(1, self.swap) * self.sin[p]
        q_size = self.heads * self.head_dim
        # q as [B, kv heads, G, D]: query head h uses kv head h // G, as transformers' repeat_kv.
        q = qk[:, :q_size].view(B, self.kv_heads, self.group, self.head_dim)
        self.keys[index][:, :, p] = qk[:, q_size:].view(B, self.kv_heads, self.head_dim)
        self.values[index][:, :, p] = projected[:, n:].view(B, self.kv_heads, self.head_dim)
        keys, values = self.keys[index][:, :, : p + 1], self.values[index][:, :, : p + 1]
        attended = F.scaled_dot_product_attention(q, keys, values, scale=self.scale)
        return attended.reshape(B, -1) @ layer.out

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B] (long) at the current position -> logits [B, vocab]; advances by one."""
        if self.position >= self.length:
            raise IndexError(f"LlamaStepper: position {self.position} is past the cache length {self.length}")
        x = self.embedding[tokens.to(self.embedding.device)]
        for index, layer in enumerate(self.layers):
            x = x + self._attention(self._norm(x, layer.norm_attention), layer, index)
            gate, up = (self._norm(x, layer.norm_mlp) @ layer.gate_up).chunk(2, dim=-1)
            x = x + (F.silu(gate) * up) @ layer.down
        self.position += 1
        return self._norm(x, self.final_norm) @ self.head
