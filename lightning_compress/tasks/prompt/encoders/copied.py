"""`full` and `mlp_free`: encoders that own a trainable copy of the decoder's weights.

`full` is the 500xCompressor encoder trained in full (its paper trains LoRA; see `lora`);
`mlp_free` is AOC: the same blocks with every MLP replaced by the identity, which for
Llama-3.2-1B removes about two thirds of the encoder's parameters.
"""

from __future__ import annotations

import copy

from torch import nn

from . import register_encoder
from .base import FadingMLP, KVEncoder, NoMLP, decoder_parts, last_reader


def _copied_encoder(decoder, memory_tokens, position_layout, drop_mlp, train_embeddings=True, memory_init="embedding_std",
                    memory_from_text=False, value_gate=False, mlp_fade=False, **_):
    embed_tokens, rotary_emb, layers = decoder_parts(decoder)
    blocks = nn.ModuleList(copy.deepcopy(layer) for layer in layers[:-1])
    if drop_mlp:
        for block in blocks:
            block.mlp = FadingMLP(block.mlp) if mlp_fade else NoMLP()
    last = copy.deepcopy(last_reader(layers[-1]))
    embeddings = copy.deepcopy(embed_tokens)
    encoder = KVEncoder(decoder.config, embeddings, rotary_emb, blocks, last, memory_tokens, position_layout, memory_init,
                       memory_from_text, value_gate)
    encoder.requires_grad_(True)
    embeddings.requires_grad_(train_embeddings)
    for fading in encoder.fading_mlps():
        # Frozen while they fade: they are the decoder's pretrained MLPs on their way out, not
        # part of the AOC encoder. Trained, they grow as 1/s to keep their share s * mlp(x), so
        # the fade is not one (docs/RESULTS.md: val BLEU 0.41 frozen, 0.33 trained at s = 1/6;
        # both runs lose the memory when the last of the MLPs goes).
        fading.mlp.requires_grad_(False)
    return encoder


@register_encoder("full")
def full_encoder(decoder, memory_tokens, position_layout="consistent", **options):
    return _copied_encoder(decoder, memory_tokens, position_layout, drop_mlp=False, **options)


@register_encoder("mlp_free")
def mlp_free_encoder(decoder, memory_tokens, position_layout="consistent", **options):
    return _copied_encoder(decoder, memory_tokens, position_layout, drop_mlp=True, **options)
