"""The memory -> cache -> decoder plumbing, checked against the decoder's own computations."""

import torch
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import rotate_half

from lightning_compress.hf_compat import forward_cache, mask_cache
from lightning_compress.tasks.prompt.encoders import build_encoder
from lightning_compress.tasks.prompt.memory import MemoryKV, decoder_logits


def test_prefix_kv_handoff_matches_one_pass(tiny_backbone):
    """KV of a prefix computed by the encoder machinery (a full copy of the decoder) and
    handed to the decoder gives the logits of one pass over prefix + text."""
    decoder = tiny_backbone.decoder
    torch.manual_seed(0)
    prefix, text = torch.randint(0, 5000, (2, 6)), torch.randint(0, 5000, (2, 5))
    encoder = build_encoder("full", decoder, memory_tokens=6)  # m = the whole prefix
    with torch.no_grad():
        memory = encoder.encode_embeds(decoder.model.embed_tokens(prefix), torch.arange(6).unsqueeze(0))
        handed_off = decoder_logits(decoder, memory, text)
        one_pass = decoder(torch.cat([prefix, text], dim=1)).logits[:, 6:]
    torch.testing.assert_close(handed_off, one_pass, atol=1e-5, rtol=1e-5)


def test_prefix_kv_equals_decoder_cache(tiny_backbone):
    decoder = tiny_backbone.decoder
    prefix = torch.randint(0, 5000, (1, 7))
    encoder = build_encoder("full", decoder, memory_tokens=7)
    with torch.no_grad():
        memory = encoder.encode_embeds(decoder.model.embed_tokens(prefix), torch.arange(7).unsqueeze(0))
        cache = DynamicCache(config=decoder.config)
        decoder(prefix, use_cache=True, **forward_cache(decoder, cache))
    for layer, (k, v) in enumerate(zip(memory.keys, memory.values)):
        torch.testing.assert_close(k, cache.layers[layer].keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(v, cache.layers[layer].values, atol=1e-5, rtol=1e-5)


def _rotate(keys: torch.Tensor, shift: int, rotary_emb) -> torch.Tensor:
    """Reference RoPE re-rotation: rotating a key by `shift` positions."""
    cos, sin = rotary_emb(keys, torch.full((1, keys.shape[2]), shift))
    return keys * cos[:, None] + rotate_half(keys) * sin[:, None]


def test_position_layouts(tiny_backbone):
    """paper: the slot KV of a plain pass over [text; slots] (positions 0..n+m-1);
    consistent: the same keys re-rotated by -n (slots at 0..m-1), values unchanged."""
    decoder, n, m = tiny_backbone.decoder, 9, 3
    torch.manual_seed(1)
    ids = torch.randint(0, 5000, (2, n))
    paper = build_encoder("mlp_free", decoder, memory_tokens=m, position_layout="paper")
    consistent = build_encoder("mlp_free", decoder, memory_tokens=m, position_layout="consistent")
    consistent.load_state_dict(paper.state_dict())
    with torch.no_grad():
        kv_paper, kv_consistent = paper(ids), consistent(ids)
        # Reference for the paper layout: the decoder's own cache over [text; slots], read
        # off with the encoder's blocks, computed by a plain forward of those blocks.
        hidden = paper.embed(ids)
        cache = DynamicCache(config=decoder.config)
        positions = torch.arange(n + m).unsqueeze(0)
        cos, sin = paper.rotary_emb(hidden, positions)
        from transformers.masking_utils import create_causal_mask

        mask = create_causal_mask(config=decoder.config, inputs_embeds=hidden, attention_mask=None, position_ids=positions, **mask_cache(None))
        for block in paper.blocks:
            hidden = block(hidden, attention_mask=mask, position_ids=positions, use_cache=True,
                           position_embeddings=(cos, sin), **forward_cache(block, cache))
    for layer in range(len(paper.blocks)):
        torch.testing.assert_close(kv_paper.keys[layer], cache.layers[layer].keys[:, :, -m:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(kv_paper.values[layer], cache.layers[layer].values[:, :, -m:], atol=1e-5, rtol=1e-5)
    for layer in range(len(kv_paper.keys)):
        torch.testing.assert_close(kv_consistent.values[layer], kv_paper.values[layer], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(kv_consistent.keys[layer], _rotate(kv_paper.keys[layer], -n, paper.rotary_emb), atol=1e-5, rtol=1e-5)


def test_consistent_memory_is_a_prefix_at_positions_zero_to_m(tiny_backbone):
    """With the consistent layout a slot's key is what the decoder would cache for a token
    at position j < m: re-rotating it to position n + j gives the paper-layout key."""
    decoder = tiny_backbone.decoder
    enc = build_encoder("full", decoder, memory_tokens=2, position_layout="consistent")
    ids = torch.randint(0, 5000, (1, 5))
    with torch.no_grad():
        kv = enc(ids)
        enc.position_layout = "paper"
        kv_paper = enc(ids)
    torch.testing.assert_close(_rotate(kv.keys[0], 5, enc.rotary_emb), kv_paper.keys[0], atol=1e-5, rtol=1e-5)


def test_to_cache_builds_a_fresh_cache_each_time(tiny_backbone):
    decoder = tiny_backbone.decoder
    memory = MemoryKV([torch.zeros(1, 2, 3, 16)] * 2, [torch.zeros(1, 2, 3, 16)] * 2)
    a, b = memory.to_cache(decoder.config), memory.to_cache(decoder.config)
    text = torch.randint(0, 100, (1, 4))
    with torch.no_grad():
        decoder(text, use_cache=True, **forward_cache(decoder, a), position_ids=torch.arange(3, 7).unsqueeze(0))
    assert a.get_seq_length() == 7 and b.get_seq_length() == 3 and memory.num_slots == 3
