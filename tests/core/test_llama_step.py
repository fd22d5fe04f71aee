"""The lean incremental Llama step computes the transformers forward's logits."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from lightning_compress.llama_step import LlamaStepper, supports


def _llama(heads: int, kv_heads: int, **extra) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=64, **extra)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("heads, kv_heads, extra", [
    (4, 4, {}),  # multi-head, as the byte model
    (4, 2, {"rope_theta": 100000.0}),  # grouped-query, as SmolLM2 (9 heads over 3)
    (4, 1, {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),  # Llama-3 RoPE
])
def test_step_by_step_logits_equal_the_full_forward(heads, kv_heads, extra):
    model = _llama(heads, kv_heads, **extra)
    tokens = torch.randint(0, 300, (3, 24))
    with torch.no_grad():
        reference = model(input_ids=tokens).logits
    stepper = LlamaStepper(model, batch=3, length=24)
    stepped = torch.stack([stepper.step(tokens[:, t]) for t in range(24)], dim=1)
    torch.testing.assert_close(stepped, reference, atol=2e-5, rtol=1e-5)
    with pytest.raises(IndexError, match="past the cache length 24"):
        stepper.step(tokens[:, 0])


def test_vocab_keeps_the_first_rows_of_the_head():
    model = _llama(4, 4)
    tokens = torch.randint(0, 300, (2, 5))
    with torch.no_grad():
        reference = model(input_ids=tokens).logits[..., :256]
    stepper = LlamaStepper(model, batch=2, length=5, vocab=256)
    stepped = torch.stack([stepper.step(tokens[:, t]) for t in range(5)], dim=1)
    torch.testing.assert_close(stepped, reference, atol=2e-5, rtol=1e-5)


def test_other_architectures_are_refused():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    assert not supports(gpt2) and not supports(_llama(4, 4, attention_bias=True))
    with pytest.raises(ValueError, match="plain Llama decoders, not GPT2LMHeadModel"):
        LlamaStepper(gpt2, batch=1, length=4)
