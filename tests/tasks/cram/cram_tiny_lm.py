"""A tiny causal LM that input vectors can steer: a word-level tokenizer of 59 words and a
2-layer random Llama with wide initial weights (the usual 0.02 leaves a random model
nearly deaf to its input)."""

from __future__ import annotations

import torch

WORDS = ("the a of to and in is we model data text memory vector language frozen input output token capacity study "
         "show results method learn train test small large new old one two three four five six seven eight nine ten "
         "red blue green cat dog bird fish tree house car road river hill sun moon star").split()


def make_lm(seed: int = 0, hidden: int = 128):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "[BOS]", "[EOS]"] + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48, initializer_range=0.1,
                         bos_token_id=1, eos_token_id=2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer
