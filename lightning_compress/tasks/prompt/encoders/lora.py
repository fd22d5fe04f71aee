"""`lora` and `lora_mlp_free`: LoRA adapters over the decoder's own frozen weights.

The encoder's blocks are shallow clones of the decoder's: the same weight tensors (one copy
in memory), but their own module tables, so peft injects the adapters into the encoder
alone and the decoder never runs an adapter. `lora_mlp_free` additionally drops the MLPs
from the encoder's blocks (AOC's LoRA ablation); the decoder keeps them.
"""

from __future__ import annotations

from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from . import register_encoder
from .base import FadingMLP, KVEncoder, NoMLP, decoder_parts, last_reader, shallow_clone


def _lora_encoder(decoder, memory_tokens, position_layout, drop_mlp, lora=None, memory_init="embedding_std", memory_from_text=False,
                  value_gate=False, mlp_fade=False, **_):
    lora = dict(lora or {})
    embed_tokens, rotary_emb, layers = decoder_parts(decoder)
    blocks = nn.ModuleList()
    for layer in layers[:-1]:
        block = shallow_clone(layer)
        block.self_attn = shallow_clone(layer.self_attn)
        if drop_mlp:
            block.mlp = FadingMLP(layer.mlp) if mlp_fade else NoMLP()  # the decoder's frozen MLP, shared
        blocks.append(block)
    encoder = KVEncoder(decoder.config, embed_tokens, rotary_emb, blocks, last_reader(layers[-1]), memory_tokens,
                        position_layout, memory_init, memory_from_text, value_gate)
    encoder.requires_grad_(False)
    # The last layer contributes only k/v; LoRA on its q/o would never get a gradient.
    config = LoraConfig(
        r=lora.get("r", 64),
        lora_alpha=lora.get("alpha", 32),
        lora_dropout=lora.get("dropout", 0.05),
        target_modules=list(lora.get("target_modules", ["q_proj", "k_proj", "v_proj", "o_proj"])),
    )
    inject_adapter_in_model(config, encoder)
    for name, param in encoder.named_parameters():
        param.requires_grad_("lora_" in name)
    encoder.memory.requires_grad_(True)
    if encoder.value_gate is not None:
        encoder.value_gate.requires_grad_(True)
    return encoder


@register_encoder("lora")
def lora_encoder(decoder, memory_tokens, position_layout="consistent", **options):
    return _lora_encoder(decoder, memory_tokens, position_layout, drop_mlp=False, **options)


@register_encoder("lora_mlp_free")
def lora_mlp_free_encoder(decoder, memory_tokens, position_layout="consistent", **options):
    return _lora_encoder(decoder, memory_tokens, position_layout, drop_mlp=True, **options)
