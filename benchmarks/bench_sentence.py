"""make bench-sentence: what the vocabulary costs a sentence autoencoder's training step.

One optimiser step (forward, backward, AdamW) of the SentenceAutoencoder on random ids, for
the embedded SmolLM2 tokenizer (49,152 ids + EOS/PAD) and the byte tokenizer (256 + 2), at
the CPU default (1+1 layers, width 256) or the given width/layers. A byte-level sentence is
about 4.5x as many tokens as a BPE one (124 UTF-8 bytes vs ~26 SmolLM2 tokens on the shipped
abstracts), so the byte rows use 4.5x longer sequences.

Usage: python benchmarks/bench_sentence.py [--width 256] [--layers 1] [--batch 32 64] [--steps 5]
GPU:   the same command on a GPU machine runs there (fp32; add --width 768 --layers 2).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from lightning_compress.tasks.sentence.model import SentenceAutoencoder

TOKENIZERS = {"embedded (49,152 ids)": (49152, 26), "bytes (256 ids)": (256, 117)}


def seconds_per_step(vocab: int, batch: int, length: int, width: int, layers: int, steps: int, device: str) -> float:
    torch.manual_seed(0)
    net = SentenceAutoencoder(vocab, width, layers, heads=8, max_tokens=length + 1).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    ids = torch.randint(vocab, (batch, length), device=device)
    lengths = torch.full((batch,), length, device=device)
    for step in range(steps + 1):
        if step == 1:  # the first step warms up allocators and kernels
            if device == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
        logits, targets = net(ids, lengths)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=net.pad)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {device}; "
          f"width {args.width}, {args.layers} layer(s) each side")
    print("| tokenizer | tokens per sentence | batch | parameters | s/step | sentences/s |\n|---|---|---|---|---|---|")
    rows = []
    for name, (vocab, length) in TOKENIZERS.items():
        parameters = sum(p.numel() for p in SentenceAutoencoder(vocab, args.width, args.layers, 8, max_tokens=length + 1).parameters())
        for batch in args.batch:
            seconds = seconds_per_step(vocab, batch, length, args.width, args.layers, args.steps, device)
            rows.append({"tokenizer": name, "length": length, "batch": batch, "parameters": parameters, "seconds": seconds})
            print(f"| {name} | {length} | {batch} | {parameters:,} | {seconds:.3f} | {batch / seconds:.1f} |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
