"""`lcompress <command>`: the command-line entry point.

  lcompress train CONFIG [key=value ...]       train, then evaluate on the test split
  lcompress eval CHECKPOINT [key=value ...]    regenerate a held-out split and score it
  lcompress compress IN OUT --model CKPT        lossless compression with a trained byte model
  lcompress decompress IN OUT --model CKPT      ... and back, verified against the original's sha256
  lcompress bench-codecs --model CKPT [key=value ...]   byte model vs the classical codecs
  lcompress ablation GRID [key=value ...]      train + evaluate an encoder x (n, m) grid, one table
  lcompress check-config CONFIG [CONFIG ...]   validate experiment and grid files without loading models

Errors in configs, paths and data print one line and exit 2; LCOMPRESS_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


from .config import ConfigError, load_config, parse_overrides


def _train(args) -> int:
    cfg = load_config(args.config, args.overrides)
    if cfg.task == "bytes":
        from .bytes.train import train_bytes

        train_bytes(cfg)
    else:
        from .train import train

        train(cfg)
    return 0


def _compress(args) -> int:
    from .bytes.api import compress_file, load_byte_model

    model = load_byte_model(args.model)
    stats = compress_file(args.input, args.output, model, batch=args.batch, chunk_bytes=args.chunk_bytes)
    raw, packed = stats["raw_bytes"], stats["compressed_bytes"]
    print(f"{args.input}: {raw:,} -> {packed:,} bytes ({packed / max(raw, 1):.4f}), model bound {stats['bound_bytes']:,.0f} "
          f"bytes, {raw / 1024 / stats['seconds']:.1f} KB/s -> {args.output}")
    return 0


def _bench_codecs(args) -> int:
    from .bytes.bench import run_bench

    run_bench(args.model, args.overrides, args.out)
    return 0


def _decompress(args) -> int:
    from .bytes.api import decompress_file, load_byte_model

    model = load_byte_model(args.model)
    size = decompress_file(args.input, args.output, model)
    print(f"{args.input} -> {args.output}: {size:,} bytes, sha256 verified")
    return 0


def _eval(args) -> int:
    import torch

    from data_modules.arxiv_abstracts import ArxivAbstractsDataModule

    from .callbacks import markdown_table
    from .evaluate import COLUMNS, evaluate, format_row, write_results
    from .modules import PromptCompressor

    overrides = parse_overrides(args.overrides)
    module = PromptCompressor.load_checkpoint(args.checkpoint, overrides)
    if torch.cuda.is_available():
        module.cuda()
    cfg = module.cfg
    datamodule = ArxivAbstractsDataModule.from_config(cfg.data, cfg.eval, module.tokenizer)
    results = evaluate(module, datamodule, cfg.eval.split, cfg.eval.num_samples, cfg.eval.batch_size)
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent.parent / f"eval_{cfg.eval.split}"
    write_results(out, results)
    print(markdown_table(COLUMNS, [format_row(results["metrics"])]))
    print(f"written to {out}")
    return 0


def _ablation(args) -> int:
    from .ablation import run_grid

    records = run_grid(args.grid, args.overrides)
    return 1 if any(r["status"] == "failed" for r in records) else 0


def _check(args) -> int:
    from .ablation import is_grid_file, load_grid

    for path in args.configs:
        if is_grid_file(path):
            _, cells = load_grid(path)
            print(f"ok  {path} (grid of {len(cells)} cells)")
        else:
            load_config(path)
            print(f"ok  {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lcompress", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from an experiment YAML (prompt compressor, or a byte model for task: bytes)")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.n_tokens=96")
    p.set_defaults(run=_train)
    p = sub.add_parser("eval", help="evaluate a checkpoint on a held-out split or data.source=FILE")
    p.add_argument("checkpoint")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--out", help="results folder (default: the run's eval_<split>/)")
    p.set_defaults(run=_eval)
    p = sub.add_parser("compress", help="compress a file with a trained byte model (arithmetic coding)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", required=True, help="ByteLM checkpoint (make train-bytes)")
    p.add_argument("--batch", type=int, default=64, help="chunks coded in parallel (recorded in the file)")
    p.add_argument("--chunk-bytes", type=int, default=None, help="default: the model's context (2048)")
    p.set_defaults(run=_compress)
    p = sub.add_parser("decompress", help="restore a file written by `lcompress compress`")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", required=True, help="the ByteLM checkpoint it was compressed with")
    p.set_defaults(run=_decompress)
    p = sub.add_parser("bench-codecs", help="byte model vs gzip/bzip2/xz/zstd/brotli/FLAC/PNG/JPEG-XL on held-out data")
    p.add_argument("--model", required=True, help="ByteLM checkpoint")
    p.add_argument("overrides", nargs="*", help="data.text=... data.images=... data.audio=... codecs.max_bytes=...")
    p.add_argument("--out", help="report folder (default: the run's bench_codecs/)")
    p.set_defaults(run=_bench_codecs)
    p = sub.add_parser("ablation", help="train and evaluate a grid of encoders x (n, m) pairs")
    p.add_argument("grid", help="grid YAML, e.g. experiments/lora_ablation.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every cell's run config")
    p.set_defaults(run=_ablation)
    p = sub.add_parser("check-config", help="validate experiment YAML files")
    p.add_argument("configs", nargs="+")
    p.set_defaults(run=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        if os.environ.get("LCOMPRESS_DEBUG"):
            raise
        print(f"lcompress: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
