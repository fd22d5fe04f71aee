"""make bench-coder: where the byte coder's time goes, and its KB/s on small and large inputs.

1. One coder step of the `small` ByteLM (1.1M parameters) for B chunks at context position t,
   through the transformers forward on a static cache (format 1) and through the lean Llama
   step (format 2), beside its parts: the attention alone (SDPA over the B chunks' cached keys
   and values, every layer) and the linears alone.
2. The ceiling set by attention: a coded byte at position t reads the keys and values of the t
   bytes before it in every layer (2 x hidden x layers x 4 bytes each), once per byte and
   with no reuse across chunks, so the cache's bandwidth bounds the coder at
   bandwidth / (bytes read per coded byte), whatever the batch.
3. Real round trips (`compress_bytes` + `decompress_bytes`, format 2) of enwik8 text of each
   --sizes, default batch: KB/s both ways, coded size vs the model's bound.

Speed does not depend on what the weights are, so a freshly initialised model is used unless
--model CKPT is given (then the sizes are also meaningful).

Usage: python benchmarks/bench_coder.py [--model CKPT] [--sizes 20480 1048576] [--batch 64]
                                        [--chunk-bytes 2048] [--positions 0 1000 2000]
                                        [--step-batches 1 16 64 | --step-batches] [--input FILE]
                                        [--kv-heads 1] [--device cuda]
--step-batches with no value skips part 1; --input codes the first --sizes bytes of FILE
instead of enwik8 (e.g. 10 MB of ../shared/data/arxiv/abstracts.jsonl, which the byte model
never trained on). --kv-heads sets the fresh model's key/value heads (grouped-query attention:
a smaller cache read per coded byte). --device runs everything on that device (default: the
GPU if there is one, as `lcompress compress`); files coded on a GPU decode only on one.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from lightning_compress.tasks.bytes.api import compress_bytes, decompress_bytes, load_byte_model
from lightning_compress.tasks.bytes.coder import LeanStepper, TransformersStepper
from lightning_compress.tasks.bytes.model import BOS, ByteLM

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer stopped after it measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_stepper(kind, model: ByteLM, batch: int, position: int, length: int, steps: int = 30) -> float:
    """Seconds per step of `kind` at context position `position` (the cache filled up to it)."""
    # A cache of the chunk's length, with room for the warm-up and timed steps after `position`
    # (a row at the chunk's last position runs past it).
    stepper = kind(model.net, batch, max(length, position + steps + 3), vocab=256)
    device = next(model.parameters()).device
    tokens = torch.full((batch,), BOS, dtype=torch.long, device=device)
    if isinstance(stepper, LeanStepper):
        stepper.llama.position = position  # the cache content does not change the time
    else:
        stepper.position = position
    for _ in range(3):
        stepper.step(tokens)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        stepper.step(tokens)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def time_attention(model: ByteLM, batch: int, position: int, repeats: int = 30) -> float:
    config = model.net.config
    head_dim = config.hidden_size // config.num_attention_heads
    # Queries grouped per key/value head, as the lean step reads the cache: [B, kv heads, group, D].
    kv_heads, device = config.num_key_value_heads, next(model.parameters()).device
    q = torch.randn(batch, kv_heads, config.num_attention_heads // kv_heads, head_dim, device=device)
    k = torch.randn(batch, kv_heads, max(1, position), head_dim, device=device)
    v = torch.randn_like(k)
    for _ in range(3):
        F.scaled_dot_product_attention(q, k, v)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        for _ in range(config.num_hidden_layers):
            F.scaled_dot_product_attention(q, k, v)
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def time_linears(model: ByteLM, batch: int, repeats: int = 100) -> float:
    weights = [m.weight for m in model.net.modules() if isinstance(m, torch.nn.Linear)]
    device = weights[0].device
    x = {w.shape[1]: torch.randn(batch, w.shape[1], device=device) for w in weights}
    synchronize(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(repeats):
            for w in weights:
                x[w.shape[1]] @ w.T
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def print_step_table(model: ByteLM, batches: list[int], positions: list[int], length: int, kv_per_position: int) -> None:
    print("| batch | position | format 1 (transformers) ms/step | format 2 (lean) ms/step | attention alone ms | "
          "linears alone ms | attention GB/s | format 2 KB/s at this position |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in batches:
        linears = time_linears(model, batch)
        for position in positions:
            position = min(position, length - 1)
            old = time_stepper(TransformersStepper, model, batch, position, length)
            new = time_stepper(LeanStepper, model, batch, position, length)
            attention = time_attention(model, batch, position + 1)
            gb_s = batch * kv_per_position * (position + 1) / attention / 1e9
            print(f"| {batch} | {position} | {1e3 * old:.2f} | {1e3 * new:.2f} | {1e3 * attention:.2f} | {1e3 * linears:.2f} "
                  f"| {gb_s:.1f} | {batch / new / 1024:.1f} |", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ByteLM checkpoint (default: a freshly initialised small model)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[20480, 1048576])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--chunk-bytes", type=int, default=2048)
    parser.add_argument("--positions", type=int, nargs="+", default=[0, 1000, 2000])
    parser.add_argument("--step-batches", type=int, nargs="*", default=[1, 16, 64])
    parser.add_argument("--input", help="file whose first --sizes bytes are coded (default: enwik8, repeated to size)")
    parser.add_argument("--kv-heads", type=int, default=0,
                        help="key/value heads of the freshly initialised model (0: one per head; ignored with --model)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu | cuda | cuda:N (default: the GPU if there is one)")
    args = parser.parse_args()
    if args.model:
        model = load_byte_model(args.model, args.device)
    else:
        torch.manual_seed(0)
        model = ByteLM("small", context=args.chunk_bytes, kv_heads=args.kv_heads).eval().to(args.device)
    device = next(model.parameters()).device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} cores"
    config = model.net.config
    head_dim = config.hidden_size // config.num_attention_heads
    kv_per_position = 2 * config.num_key_value_heads * head_dim * config.num_hidden_layers * 4  # bytes, float32
    print(f"Machine: {platform.machine()}, {where}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; ByteLM {model.hparams.size} ({model.parameter_count():,} parameters, "
          f"{config.num_key_value_heads} key/value heads)\n")
    length = args.chunk_bytes
    if args.step_batches:
        print_step_table(model, args.step_batches, args.positions, length, kv_per_position)
    average = kv_per_position * length / 2
    print(f"A coded byte reads {kv_per_position:,} bytes of cache per earlier position: {average / 1e6:.1f} MB on "
          f"average over a {length}-byte chunk; at 20 GB/s that alone caps the coder at "
          f"{20e9 / average / 1024:.1f} KB/s.\n")
    if not args.sizes:
        return
    if args.input:
        name, text = Path(args.input).name, Path(args.input).read_bytes()[: max(args.sizes)]
        if len(text) < max(args.sizes):
            parser.error(f"--input {args.input} has {len(text):,} bytes, fewer than --sizes {max(args.sizes):,}")
    else:
        name = "enwik8 tail"
        text = (SHARED / "text" / "enwik8_prefix_3MB.xml").read_bytes() if SHARED.is_dir() else os.urandom(max(args.sizes))
    print("| input | bytes | chunk bytes | batch | compress KB/s | decompress KB/s | compress s | decompress s | "
          "bits/byte | coded / bound |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        data = text[:size] if args.input else (text * (1 + size // len(text)))[-size:]
        start = time.perf_counter()
        blob, stats = compress_bytes(model, data, args.chunk_bytes, args.batch, progress=True)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        assert decompress_bytes(model, blob, progress=True) == data, "round trip failed"
        decode_s = time.perf_counter() - start
        print(f"| {name} | {size:,} | {args.chunk_bytes} | {args.batch} | {size / 1024 / encode_s:.2f} | "
              f"{size / 1024 / decode_s:.2f} | {encode_s:.0f} | {decode_s:.0f} | {8 * stats['compressed_bytes'] / size:.3f} | "
              f"{stats['compressed_bytes'] / stats['bound_bytes']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
