"""make bench-cram: what batching buys the cramming optimiser, and what length costs.

1. Texts per hour at batch 1 vs batch 16 on the same machine in one run: the same 16 texts
   are crammed for a fixed number of steps (no early stop, so both do the same work), once
   as one batch of 16 and once as 16 batches of one, interleaved by repeat. Texts per hour
   are given for a budget of `--steps-per-text` optimiser steps per text (the mean a text
   needs; the CPU run in docs/RESULTS.md says how many).
2. Seconds per optimisation step vs text length, batch 1 and batch 16.

Usage: python benchmarks/bench_cram.py [--decoder embedded] [--steps 10] [--lengths 16 32 64 128]
GPU:   the same command on a GPU machine (bf16); add --batch 64 for a bigger batch.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from lightning_compress.backbone import load_backbone
from lightning_compress.tasks.cram.optimise import cram_batch
from lightning_compress.tasks.cram.run import resolve_dtype


def _texts(tokenizer, count: int, length: int) -> torch.Tensor:
    from data_modules.records import SkipLog, iter_texts

    rows = []
    for text in iter_texts("sample", "abstract", SkipLog()):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= length:
            rows.append(ids[:length])
        if len(rows) == count:
            return torch.tensor(rows)
    raise SystemExit(f"the sample holds fewer than {count} abstracts of {length} tokens")


def seconds_per_step(model, ids: torch.Tensor, steps: int, bos: int | None) -> float:
    """Wall seconds per optimiser step of one batch (one warm-up step not counted)."""
    options = dict(vectors=1, mode="full", lr=1e-2, bos_id=bos, progress=False)
    cram_batch(model, ids, list(range(len(ids))), max_steps=1, **options)
    start = time.perf_counter()
    cram_batch(model, ids, list(range(len(ids))), max_steps=steps, **options)
    return (time.perf_counter() - start) / (steps + 1)  # steps updates + the final evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", default="embedded")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=32, help="tokens per text for part 1")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--steps-per-text", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    backbone = load_backbone(args.decoder, resolve_dtype("auto"))
    model = backbone.decoder.cuda() if torch.cuda.is_available() else backbone.decoder
    bos = backbone.tokenizer.bos_token_id
    ids = _texts(backbone.tokenizer, args.batch, max([args.length] + args.lengths))
    batched, single = [], []
    for _ in range(args.repeats):
        batched.append(seconds_per_step(model, ids[:, : args.length], args.steps, bos))
        single.append(sum(seconds_per_step(model, ids[i : i + 1, : args.length], args.steps, bos)
                          for i in range(args.batch)) / args.batch)
    per_hour = lambda seconds, batch: 3600 * batch / (seconds * args.steps_per_text)  # noqa: E731
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
                   + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"),
        "decoder": args.decoder, "length": args.length, "steps_per_text": args.steps_per_text,
        "batch1_s_per_step": min(single), f"batch{args.batch}_s_per_step": min(batched),
        "batch1_texts_per_hour": per_hour(min(single), 1),
        f"batch{args.batch}_texts_per_hour": per_hour(min(batched), args.batch),
        "speedup": per_hour(min(batched), args.batch) / per_hour(min(single), 1),
        "s_per_step_by_length": {
            length: {"batch1": seconds_per_step(model, ids[:1, :length], args.steps, bos),
                     f"batch{args.batch}": seconds_per_step(model, ids[:, :length], args.steps, bos)}
            for length in args.lengths
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
