"""make bench-train: is Lightning free, and does batching pay off?

1. Training throughput (prompt tokens/s) of PromptCompressor under lightning.Trainer vs a
   bare PyTorch loop doing the same math (encoder -> memory KV -> frozen decoder -> CE,
   AdamW, grad clipping) on the same in-memory batches, in one process, interleaved
   (bare, lightning, bare, lightning) so machine noise hits both alike.
2. Greedy regeneration of 16 prompts: one batch of 16 vs 16 batches of one.

Usage: python benchmarks/bench_train.py [--decoder embedded] [--steps 20] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from data_modules.arxiv_abstracts import AbstractsStream, collate
from lightning_compress.backbone import load_backbone
from lightning_compress.config import load_config
from lightning_compress.tasks.prompt.module import PromptCompressor


class StepTimer(pl.Callback):
    """Wall time of the training steps after `warmup`, as the bare loop measures it."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


def bare_loop(module: PromptCompressor, batches, warmup: int) -> float:
    module.train()
    optimizer = module.configure_optimizers()["optimizer"]
    params = [p for p in module.parameters() if p.requires_grad]
    start = None
    for index, batch in enumerate(batches):
        if index == warmup:
            start = time.perf_counter()
        loss, _ = module.loss_and_accuracy(batch["input_ids"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    return time.perf_counter() - start


def lightning_loop(module: PromptCompressor, batches, warmup: int) -> float:
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        max_steps=len(batches), accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, gradient_clip_val=1.0,
        callbacks=[timer],
    )
    loader = DataLoader(batches, batch_size=None)  # the same pre-collated batches
    trainer.fit(module, train_dataloaders=loader)
    return timer.end - timer.start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decoder", default="embedded")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config("experiments/prompt/aoc.yaml", [f"decoder.source={args.decoder}", *args.overrides])
    backbone = load_backbone(cfg.decoder.source, cfg.decoder.dtype)
    stream = AbstractsStream(cfg.data.source, "train", backbone.tokenizer, cfg.data.n_tokens)
    loader = DataLoader(stream, batch_size=cfg.data.batch_size, collate_fn=collate)
    batches = []
    for batch in loader:
        batches.append({"input_ids": batch["input_ids"]})
        if len(batches) == args.warmup + args.steps:
            break
    tokens = args.steps * cfg.data.batch_size * cfg.data.n_tokens
    results = {"bare": [], "lightning": []}
    for _ in range(args.repeats):
        for name, loop in (("bare", bare_loop), ("lightning", lightning_loop)):
            torch.manual_seed(0)
            module = PromptCompressor(cfg, backbone)
            results[name].append(tokens / loop(module, batches, args.warmup))
            del module
    bare, light = max(results["bare"]), max(results["lightning"])

    # Regeneration: 16 prompts, batched vs one at a time, same memory.
    torch.manual_seed(0)
    module = PromptCompressor(cfg, backbone).eval()
    ids = torch.cat([b["input_ids"] for b in batches])[:16]
    with torch.no_grad():
        memory = module.compress(ids)
        start = time.perf_counter()
        batched = module.regenerate_memory(memory)
        t_batched = time.perf_counter() - start
        start = time.perf_counter()
        single = [module.regenerate_memory(memory.select(slice(i, i + 1)))[0] for i in range(len(ids))]
        t_single = time.perf_counter() - start
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "decoder": cfg.decoder.source,
        "encoder": cfg.model.encoder.name,
        "n": cfg.data.n_tokens,
        "m": cfg.model.memory_tokens,
        "batch": cfg.data.batch_size,
        "bare_tokens_per_s": round(bare, 1),
        "lightning_tokens_per_s": round(light, 1),
        "lightning_vs_bare": round(light / bare, 3),
        "all_runs": {k: [round(v, 1) for v in vs] for k, vs in results.items()},
        "regen_batched_s": round(t_batched, 2),
        "regen_single_s": round(t_single, 2),
        "regen_speedup": round(t_single / t_batched, 2),
        "regen_outputs_identical": batched == single,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
