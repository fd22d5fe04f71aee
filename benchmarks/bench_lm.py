"""make bench-lm: a pretrained LM as a lossless text compressor, against the classical codecs.

On held-out text (the last --bytes of the enwik8 sample, the byte task's held-out tail, and the
last --bytes of the arXiv abstracts), for each text:

- gzip -9, bzip2 -9, xz -9e, zstd -19, brotli -q 11 on the whole text, in bits/byte;
- the LM (`lcompress compress --lm`): a real compress + decompress round trip at --window
  tokens per window, --batch windows side by side: coded bits/byte (46-byte header
  included), the LM's cross-entropy bound, the coder's overhead over it, KB/s both ways,
  and the ratio counting the model's weights (bf16, 2 bytes each);
- the byte model, when --byte-model CKPT is given, the same way;
- bits/byte vs window: the LM's cross-entropy with a fresh context every W tokens (one
  teacher-forced forward per window; the coded size sits ~1% above it, measured above);
- the ceiling: FLOPs per coded token (2 x every linear weight, the LM head included, plus
  attention over the average context) x tokens/s, against the same matrix multiplies timed
  alone on this machine (every weight is read once per step: memory-bound at small batch).

Writes runs/bench_lm/bench_lm.{md,csv,json,png} (and TensorBoard). Usage:
  python benchmarks/bench_lm.py [--lm embedded] [--lm-dtype float32] [--bytes 32768] [--window 1024] [--batch 16]
                                [--windows 128 256 512 1024 2048] [--byte-model CKPT]
On a GPU: the same command; the coder runs where the model is (recorded in the file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

from bench_regenerate import linear_shapes, time_linears
from lightning_compress.codecs import GENERAL
from lightning_compress.reports import finish_figure, mirror_to_tensorboard, new_figure, rows_markdown, write_figure, write_table
from lightning_compress.tasks.bytes.lm_api import LmCompressor

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COLUMNS = ["text", "codec", "raw_bytes", "coded_bytes", "bits_per_byte", "bound_bits_per_byte", "overhead",
           "compress_kb_s", "decompress_kb_s", "ratio_with_model"]


def texts(size: int) -> dict[str, bytes]:
    enwik = (SHARED / "text" / "enwik8_prefix_3MB.xml").read_bytes()[-size:]
    abstracts = [json.loads(line)["abstract"] for line in (SHARED / "arxiv" / "abstracts.jsonl").read_text().splitlines()[-400:]]
    return {"enwik8 (held-out tail)": enwik, "arXiv abstracts": "\n\n".join(abstracts).encode()[-size:]}


def codec_rows(name: str, data: bytes) -> list[dict]:
    return [{"text": name, "codec": codec, "raw_bytes": len(data), "coded_bytes": size_of(data),
             "bits_per_byte": 8 * size_of(data) / len(data)} for codec, size_of in GENERAL.items()]


def coder_row(name: str, data: bytes, codec: str, compress, decompress, weights: int) -> dict:
    start = time.perf_counter()
    blob, stats = compress(data)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    if decompress(blob) != data:
        raise RuntimeError(f"{codec}: the round trip of {name} failed")
    decode_s = time.perf_counter() - start
    kb = len(data) / 1024
    return {"text": name, "codec": codec, "raw_bytes": len(data), "coded_bytes": len(blob),
            "bits_per_byte": 8 * len(blob) / len(data), "bound_bits_per_byte": 8 * stats["bound_bytes"] / len(data),
            "overhead": len(blob) / stats["bound_bytes"] - 1, "compress_kb_s": kb / encode_s, "decompress_kb_s": kb / decode_s,
            "ratio_with_model": (len(blob) + 2 * weights) / len(data), "tokens": stats.get("tokens"),
            "encode_s": encode_s, "decode_s": decode_s}


@torch.inference_mode()
def bits_per_byte_by_window(lm: LmCompressor, data: bytes, windows: list[int]) -> dict[int, float]:
    """Cross-entropy (bits/byte) with a fresh context (the start token) every W tokens."""
    ids = torch.from_numpy(lm.tokens.encode(data)[0])
    out = {}
    for window in windows:
        bits = 0.0
        for start in range(0, len(ids), window):
            piece = ids[start : start + window]
            inputs = torch.cat([torch.tensor([lm.start_token]), piece])[None].to(lm.device)
            logp = torch.log_softmax(lm.model(input_ids=inputs).logits[0, :-1].double(), dim=-1)
            bits -= logp[torch.arange(len(piece)), piece.to(lm.device)].sum().item() / math.log(2)
        out[window] = bits / len(data)
        print(f"[bench-lm] window {window}: {out[window]:.4f} bits/byte", flush=True)
    return out


def ceiling(lm: LmCompressor, row: dict, batch: int, window: int) -> dict:
    """FLOPs per token and how close the coder's tokens/s comes to the linears alone."""
    config = lm.model.config
    shapes = linear_shapes(lm.model)
    linear_flops = 2 * sum(i * o for i, o in shapes)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention_flops = 4 * config.num_hidden_layers * config.num_attention_heads * head_dim * (window / 2)
    flops = linear_flops + attention_flops
    tokens_per_s = row["tokens"] / row["encode_s"]
    dtype = next(lm.model.parameters()).dtype
    linears_s = time_linears(shapes, batch, repeats=5, dtype=dtype) if lm.device.type == "cpu" else float("nan")
    return {"flops_per_token": flops, "tokens_per_s": tokens_per_s, "achieved_gflop_s": flops * tokens_per_s / 1e9,
            "linears_alone_tokens_per_s": batch / linears_s, "batch": batch}


def figure(by_window: dict[str, dict[int, float]], rows: list[dict], lm_name: str):
    fig, axis = new_figure(7, 4.5)
    for k, (name, curve) in enumerate(by_window.items()):
        color = f"C{k}"
        axis.plot(list(curve), list(curve.values()), "o-", color=color, label=f"{lm_name}, {name} (bound)")
        coded = [r for r in rows if r["text"] == name and r["codec"].startswith("LM")]
        for r in coded:
            axis.plot([r["window"]], [r["bits_per_byte"]], "*", markersize=12, color=color, label=f"coded, {name}")
        xz = next(r["bits_per_byte"] for r in rows if r["text"] == name and r["codec"].startswith("LZMA2"))
        axis.axhline(xz, color=color, linestyle=":", label=f"xz -9e, {name}")
    axis.set_xscale("log", base=2)
    finish_figure(axis=axis, figure=fig, xlabel="window (tokens, fresh context each)", ylabel="bits / byte (lower is better)",
                  title="Token-level coding with a pretrained LM", legend_size=7)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", default="embedded")
    parser.add_argument("--lm-dtype", default="float32", help="weight dtype of the LM (bfloat16: CPUs with AMX, GPUs)")
    parser.add_argument("--bytes", type=int, default=32768)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--windows", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--byte-model", help="a ByteLM checkpoint to code the same texts with")
    parser.add_argument("--out", default="runs/bench_lm")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"bench-lm reads its held-out texts from {SHARED}, which this machine does not have")

    lm = LmCompressor.load(args.lm, args.lm_dtype)
    weights = sum(p.numel() for p in lm.model.parameters())
    rows, by_window = [], {}
    byte_model = None
    if args.byte_model:
        from lightning_compress.tasks.bytes.api import compress_bytes, decompress_bytes, load_byte_model

        byte_model = load_byte_model(args.byte_model)
    for name, data in texts(args.bytes).items():
        print(f"[bench-lm] {name}: {len(data):,} bytes", flush=True)
        rows += codec_rows(name, data)
        row = coder_row(name, data, f"LM {args.lm} {args.lm_dtype} (window {args.window})",
                        lambda d: lm.compress(d, args.window, args.batch, progress=True),
                        lambda b: lm.decompress(b, progress=True), weights)
        row.update(window=args.window, **ceiling(lm, row, min(args.batch, math.ceil(row["tokens"] / args.window)), args.window))
        rows.append(row)
        if byte_model is not None:
            rows.append(coder_row(name, data, f"ByteLM {byte_model.hparams.size}",
                                  lambda d: compress_bytes(byte_model, d, progress=True),
                                  lambda b: decompress_bytes(byte_model, b, progress=True), byte_model.parameter_count()))
        by_window[name] = bits_per_byte_by_window(lm, data, args.windows)

    folder = Path(args.out)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {lm.device.type}, threads {torch.get_num_threads()}"
    lm_rows = [r for r in rows if "achieved_gflop_s" in r]
    curve = markdown_curve(by_window)
    ceilings = "\n".join(
        f"- {r['text']}: {r['tokens']:,} tokens, {r['flops_per_token'] / 1e6:.0f} MFLOP/token, {r['tokens_per_s']:.0f} tokens/s "
        f"= {r['achieved_gflop_s']:.1f} GFLOP/s; the same linears alone at batch {r['batch']}: "
        f"{r['linears_alone_tokens_per_s']:.0f} tokens/s" for r in lm_rows)
    text = (f"Machine: {machine}\n\n" + rows_markdown(COLUMNS, rows) + "\n\nbits/byte vs window (cross-entropy bound):\n\n"
            + curve + "\n\nCeiling:\n\n" + ceilings + "\n")
    write_table(folder, "bench_lm", COLUMNS, rows, markdown=text)
    fig = figure(by_window, rows, args.lm)
    write_figure(folder / "bench_lm.png", fig)
    mirror_to_tensorboard(folder / "summary", {"bench_lm/bits_per_byte_vs_window": fig}, {"bench_lm/table": text})
    print(text)
    print(f"written to {folder} (bench_lm.md/.csv/.json/.png)")


def markdown_curve(by_window: dict[str, dict[int, float]]) -> str:
    windows = sorted({w for curve in by_window.values() for w in curve})
    header = "| text | " + " | ".join(f"W={w}" for w in windows) + " |"
    lines = [header, "|---" * (len(windows) + 1) + "|"]
    for name, curve in by_window.items():
        lines.append(f"| {name} | " + " | ".join(f"{curve[w]:.4f}" for w in windows) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
