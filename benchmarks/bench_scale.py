"""make bench-scale: AOC training throughput at 1, 2, ... processes (DDP) and, on GPUs, MFU.

Each measurement starts `torchrun --standalone --nproc_per_node=P` on this script in
worker mode: P processes train the same global batch (batch / P prompts each) under
lightning.Trainer (DDP when P > 1), on pre-collated batches of each rank's own shard.
Throughput counts prompt tokens of the global batch per second of timed steps.

Model FLOPs per step: torch.utils.flop_counter counts one real forward + backward step
(the frozen decoder computes input gradients only, so it costs ~4x weights x tokens where a
trained model costs 6x). MFU = model FLOP/s / the GPU's peak dense bf16 FLOP/s
(H100/H200 SXM: 989 TFLOP/s).

Usage:
  python benchmarks/bench_scale.py --processes 1 2                      (CPU, embedded decoder)
  python benchmarks/bench_scale.py --processes 1 --accelerator gpu --precision bf16-mixed \
      --decoder llama-1b-random --batch 64 --n 96 --m 16                 (GPU, Llama-3.2-1B-sized)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def flops_per_prompt(module, batch) -> float:
    """FLOPs of one training step (forward + backward) per prompt, as torch's FlopCounterMode
    counts the matmuls and attention that really run: the frozen decoder's backward
    computes input gradients only, LoRA bases no weight gradients."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = module.loss_and_accuracy(batch)
        loss.backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch.shape[0]


def llama_1b_random(tokenizer):
    """A Llama-3.2-1B-shaped decoder with random bf16 weights (no download), for MFU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lightning_compress.backbone import Backbone, freeze

    config = LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        decoder = LlamaForCausalLM(config).to(torch.bfloat16)
    freeze(decoder)
    return Backbone(decoder=decoder, tokenizer=tokenizer, source="llama-1b-random", fingerprint="random")


def worker(args) -> None:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader

    from data_modules.arxiv_abstracts import AbstractsStream, collate
    from lightning_compress.backbone import load_backbone, load_tokenizer
    from lightning_compress.config import load_config
    from lightning_compress.tasks.prompt.module import PromptCompressor

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import StepTimer

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    overrides = [f"data.n_tokens={args.n}", f"model.memory_tokens={args.m}", f"model.encoder.name={args.encoder}"]
    if args.decoder == "llama-1b-random":
        cfg = load_config("experiments/prompt/aoc.yaml", ["decoder.source=embedded", *overrides])
        backbone = llama_1b_random(load_tokenizer("embedded"))
    else:
        cfg = load_config("experiments/prompt/aoc.yaml", [f"decoder.source={args.decoder}", *overrides])
        backbone = load_backbone(cfg.decoder.source, cfg.decoder.dtype)
    micro = args.batch // world
    stream = AbstractsStream(cfg.data.source, "train", backbone.tokenizer, cfg.data.n_tokens, rank=rank, world_size=world, repeat=True)
    batches = []
    for batch in DataLoader(stream, batch_size=micro, collate_fn=collate):
        batches.append({"input_ids": batch["input_ids"]})
        if len(batches) == args.warmup + args.steps:
            break
    torch.manual_seed(0)
    module = PromptCompressor(cfg, backbone)
    device = "cuda" if args.accelerator == "gpu" else "cpu"
    with torch.autocast(device, dtype=torch.bfloat16, enabled=args.precision.startswith("bf16")):
        per_prompt = flops_per_prompt(module.to(device), batches[0]["input_ids"].to(device))
    timer = StepTimer(args.warmup)
    trainer = pl.Trainer(
        max_steps=len(batches), accelerator=args.accelerator, devices=world, strategy="ddp" if world > 1 else "auto",
        precision=args.precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, gradient_clip_val=1.0, callbacks=[timer],
        use_distributed_sampler=False,  # each rank already holds its own batches
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    if rank == 0:
        seconds = timer.end - timer.start
        flops = per_prompt * args.batch * args.steps / seconds
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
        peak = next((v for k, v in PEAK_BF16.items() if k in device), None) if torch.cuda.is_available() else None
        result = {
            "processes": world, "decoder": args.decoder, "encoder": args.encoder, "n": args.n, "m": args.m,
            "global_batch": args.batch, "per_process_batch": micro, "threads_per_process": torch.get_num_threads(),
            "device": device, "precision": args.precision, "steps": args.steps, "seconds": round(seconds, 2),
            "prompt_tokens_per_s": round(args.batch * args.n * args.steps / seconds, 1),
            "gflops_per_prompt_step": round(per_prompt / 1e9, 3),
            "model_tflops_per_s": round(flops / 1e12, 4), "mfu": round(flops / peak, 4) if peak else None,
        }
        Path(args.out).write_text(json.dumps(result))
    if torch.distributed.is_initialized():
        # Leave together: a rank that exits while another is still in gloo's teardown aborts it.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--decoder", default="embedded", help="embedded | llama-1b-random | any decoder.source")
    parser.add_argument("--encoder", default="mlp_free")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--batch", type=int, default=8, help="global batch")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--m", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    cores = os.cpu_count() or 1
    rows = []
    for processes in args.processes:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            env = dict(os.environ)
            if args.accelerator == "cpu":  # share the cores, do not oversubscribe them
                env["OMP_NUM_THREADS"] = str(max(1, cores // processes))
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                       __file__, "--worker", "--out", str(out), *_strip_processes(sys.argv[1:])]
            subprocess.run(command, env=env, check=True)
            rows.append(json.loads(out.read_text()))
    base = rows[0]["prompt_tokens_per_s"]
    for row in rows:
        row["speedup_vs_first"] = round(row["prompt_tokens_per_s"] / base, 3)
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "cores": cores, "results": rows}, indent=2))


def _strip_processes(argv: list[str]) -> list[str]:
    out, skip = [], False
    for item in argv:
        if item == "--processes":
            skip = True
            continue
        if skip and item.lstrip("-").isdigit() and not item.startswith("--"):
            continue
        skip = False
        out.append(item)
    return out


if __name__ == "__main__":
    main()
