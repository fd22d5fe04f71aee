import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lightning_compress.tasks.prompt.encoders import ENCODERS, build_encoder


def _trainable(encoder):
    return {name for name, p in encoder.named_parameters() if p.requires_grad}


def test_registry_names():
    assert set(ENCODERS) == {"full", "mlp_free", "lora", "lora_mlp_free"}
    with pytest.raises(ValueError, match="registered encoders"):
        build_encoder("nope", None, 1)


@pytest.mark.parametrize("name", ["full", "mlp_free"])
def test_copied_encoders_train_everything_they_hold(tiny_backbone, name):
    decoder = tiny_backbone.decoder
    encoder = build_encoder(name, decoder, memory_tokens=2)
    assert all(p.requires_grad for p in encoder.parameters())
    decoder_ptrs = {p.data_ptr() for p in decoder.parameters()}
    assert not any(p.data_ptr() in decoder_ptrs for p in encoder.parameters()), "copied encoder shares decoder storage"
    has_mlp = any(".mlp." in n for n in _trainable(encoder))
    assert has_mlp == (name == "full")


@pytest.mark.parametrize("name", ["lora", "lora_mlp_free"])
def test_lora_encoders_train_only_adapters_and_slots(tiny_backbone, name):
    decoder = tiny_backbone.decoder
    encoder = build_encoder(name, decoder, memory_tokens=2, lora={"r": 4, "target_modules": ["q_proj", "v_proj"]})
    trainable = _trainable(encoder)
    assert "memory" in trainable
    assert all(n == "memory" or ".lora_A." in n or ".lora_B." in n for n in trainable)
    assert any("q_proj.lora_A" in n for n in trainable) and any("v_proj.lora_B" in n for n in trainable)
    # One copy of the base weights: the encoder's frozen tensors are the decoder's.
    decoder_ptrs = {p.data_ptr() for p in decoder.parameters()}
    frozen = [p for p in encoder.parameters() if not p.requires_grad]
    assert frozen and all(p.data_ptr() in decoder_ptrs for p in frozen)
    # The decoder itself runs no adapter and keeps its MLPs.
    assert not any("lora" in n for n, _ in decoder.named_modules())
    assert all(type(layer.mlp).__name__ == "LlamaMLP" for layer in decoder.model.layers)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_trainable_parameter_gets_a_gradient(tiny_backbone, name):
    """No dead parameters (DDP would need find_unused_parameters)."""
    encoder = build_encoder(name, tiny_backbone.decoder, memory_tokens=2, lora={"r": 4})
    memory = encoder(torch.randint(0, 1000, (2, 7)))
    sum(k.sum() + v.sum() for k, v in zip(memory.keys, memory.values)).backward()
    missing = [n for n, p in encoder.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_memory_kv_shapes(tiny_backbone):
    config = tiny_backbone.decoder.config
    memory = build_encoder("mlp_free", tiny_backbone.decoder, memory_tokens=5)(torch.randint(0, 1000, (3, 8)))
    assert len(memory.keys) == config.num_hidden_layers
    assert memory.keys[0].shape == (3, config.num_key_value_heads, 5, config.hidden_size // config.num_attention_heads)


def test_mlp_free_is_two_thirds_smaller_for_llama_3_2_1b():
    """AOC's headline: for Llama-3.2-1B the MLP-free encoder has ~67% fewer parameters."""
    config = LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True,
    )
    with torch.device("meta"):
        decoder = LlamaForCausalLM(config)
        encoder = build_encoder("mlp_free", decoder, memory_tokens=16)
    decoder_params = sum(p.numel() for p in decoder.parameters())
    reduction = 1 - encoder.parameter_count() / decoder_params
    assert 0.62 < reduction < 0.70, reduction
