"""make bench-regenerate: how close greedy regeneration from memory KV comes to what this
machine's matrix multiplies allow.

Regenerates B prompts of n tokens from m memory slots with the embedded decoder (every row
runs the full n + 8 steps: no EOS), and compares the time per decoder step with

- the FLOPs of a step: 2 x (weights of every linear layer, the tied LM head included) x B,
  plus attention over the growing cache;
- the ceiling: the same linear layers alone (the same [B, d] x [d, d'] products, timed in
  a loop on this machine), i.e. what a step would cost if everything but the matrix
  multiplies took no time; at small B these are memory-bound (every weight is read once per
  step), so this is the honest ceiling, not the machine's peak on square matrices (also
  printed).

Usage: python benchmarks/bench_regenerate.py [--batch 16] [--n 96] [--m 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from lightning_compress.backbone import load_backbone
from lightning_compress.tasks.prompt.generation import greedy_regenerate
from lightning_compress.tasks.prompt.memory import MemoryKV


def linear_shapes(decoder) -> list[tuple[int, int]]:
    """(in, out) of every matrix multiply a decoder step runs, the LM head included."""
    shapes = [(m.in_features, m.out_features) for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    return shapes


def time_linears(shapes, batch: int, repeats: int, dtype: torch.dtype = torch.float32) -> float:
    weights = [torch.randn(o, i, dtype=dtype) for i, o in shapes]
    x = {i: torch.randn(batch, i, dtype=dtype) for i, _ in shapes}
    for w in weights:  # warm-up
        x[w.shape[1]] @ w.T
    start = time.perf_counter()
    for _ in range(repeats):
        for w in weights:
            x[w.shape[1]] @ w.T
    return (time.perf_counter() - start) / repeats


def peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = load_backbone("embedded")
    decoder, config = backbone.decoder, backbone.decoder.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    shape = (args.batch, config.num_key_value_heads, args.m, head_dim)
    torch.manual_seed(0)
    memory = MemoryKV([torch.randn(shape) for _ in range(config.num_hidden_layers)],
                      [torch.randn(shape) for _ in range(config.num_hidden_layers)])
    steps = args.n + 8
    greedy_regenerate(decoder, memory, backbone.tokenizer.bos_token_id, [-1], 4)  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        rows = greedy_regenerate(decoder, memory, backbone.tokenizer.bos_token_id, [-1], steps)
        times.append(time.perf_counter() - start)
    assert all(len(r) == steps for r in rows)
    step_s = min(times) / steps

    shapes = linear_shapes(decoder)
    linear_flops = 2 * sum(i * o for i, o in shapes) * args.batch
    mean_context = args.m + steps / 2
    attention_flops = 4 * config.num_hidden_layers * config.num_attention_heads * head_dim * mean_context * args.batch
    ceiling_s = time_linears(shapes, args.batch, repeats=10)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "batch": args.batch, "n": args.n, "m": args.m, "steps": steps,
        "seconds_per_step": round(step_s, 4),
        "tokens_per_s": round(args.batch / step_s, 1),
        "gflop_per_step": round((linear_flops + attention_flops) / 1e9, 2),
        "achieved_gflops": round((linear_flops + attention_flops) / step_s / 1e9, 1),
        "linears_alone_seconds_per_step": round(ceiling_s, 4),
        "share_of_ceiling": round(ceiling_s / step_s, 3),
        "peak_gflops_square_2048": round(peak_gflops(), 1),
        "seconds_per_prompt": round(min(times) / args.batch, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
