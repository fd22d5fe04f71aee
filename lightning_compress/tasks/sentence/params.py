"""Parameter counts of the paper's reference models, from their configurations (the defaults
of transformers' BertConfig and GPT2Config are bert-base-uncased and gpt2), built on the meta
device: no weights are downloaded or allocated."""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def reference_parameters() -> dict[str, int]:
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        bert = BertModel(BertConfig())  # 12 layers, 768 wide, 30522 tokens
        gpt2 = GPT2LMHeadModel(GPT2Config())  # 12 layers, 768 wide, 50257 tokens, tied head
    return {"bert_base": sum(p.numel() for p in bert.parameters()),
            "gpt2_small": sum(p.numel() for p in gpt2.parameters())}


def size_report(model: torch.nn.Module) -> dict:
    """Our parameters, those outside the token embedding, and their share of the references'."""
    ours = sum(p.numel() for p in model.parameters())
    embedding = model.embed.weight.numel()
    refs = reference_parameters()
    report = {"parameters": ours, "parameters_without_token_embedding": ours - embedding, **{f"{k}_parameters": v for k, v in refs.items()}}
    for name, count in refs.items():
        report[f"share_of_{name}"] = ours / count
    return report
