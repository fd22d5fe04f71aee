"""The byte task's verbs: `lcompress compress | decompress | bench-codecs`."""

from __future__ import annotations

import os
from pathlib import Path

from .config import LM_DTYPES


def _check_paths(args) -> None:
    """Refuse before any model loads: an input that is not a regular file (a directory,
    /dev/zero), an output that is the input itself (`compress X X` would replace the input by
    its own archive), a directory, or in a folder that does not exist."""
    source, target = Path(args.input), Path(args.output)
    if not source.exists():
        raise FileNotFoundError(f"{args.input} does not exist")
    if not source.is_file():
        raise ValueError(f"{args.input} is {'a directory' if source.is_dir() else 'not a regular file'}; "
                         "expected a file to read")
    if target.exists() and os.path.samefile(source, target):
        raise ValueError(f"{args.output} is the input file itself; write the output elsewhere")
    if target.is_dir():
        raise ValueError(f"{args.output} is a directory; expected the path of the file to write")
    if not target.parent.is_dir():
        raise ValueError(f"{args.output}: its folder {target.parent} "
                         f"{'is a file' if target.parent.exists() else 'does not exist'}")


def _report(args, stats: dict, extra: str = "") -> None:
    raw, packed = stats["raw_bytes"], stats["compressed_bytes"]
    print(f"{args.input}: {raw:,} -> {packed:,} bytes ({packed / max(raw, 1):.4f}, {8 * packed / max(raw, 1):.3f} "
          f"bits/byte), model bound {stats['bound_bytes']:,.0f} bytes{extra}, {raw / 1024 / stats['seconds']:.2f} KB/s "
          f"-> {args.output}")


def _given(value, default):
    """An option's value, or its default when it was not given (0 is a value, refused later)."""
    return default if value is None else value


def _compress(args) -> int:
    _check_paths(args)
    if args.lm:
        from .lm_api import DEFAULT_BATCH, DEFAULT_WINDOW, LmCompressor

        if args.chunk_bytes is not None:
            raise ValueError("--chunk-bytes is for the byte model (--model); the LM codes --window tokens at a time")
        lm = LmCompressor.load(args.lm, args.lm_dtype)
        stats = lm.compress_file(args.input, args.output, window=_given(args.window, DEFAULT_WINDOW),
                                 batch=_given(args.batch, DEFAULT_BATCH))
        spelt = f", {stats['byte_spelt']:,} bytes spelt byte by byte" if stats["byte_spelt"] else ""
        _report(args, stats, f", {stats['tokens']:,} tokens{spelt}")
        return 0
    from .api import compress_file, load_byte_model
    from .train import stored_config

    if args.window is not None:
        raise ValueError("--window is for a pretrained LM (--lm); the byte model codes --chunk-bytes at a time")
    model = load_byte_model(args.model)
    batch = _given(args.batch, stored_config(model, []).codecs.batch)  # the model's experiment's batch
    _report(args, compress_file(args.input, args.output, model, batch=batch, chunk_bytes=args.chunk_bytes))
    return 0


def _decompress(args) -> int:
    from .container import MAGIC as BYTE_MAGIC, ContainerError
    from .lm_container import MAGIC as LM_MAGIC

    _check_paths(args)
    blob = Path(args.input).read_bytes()  # read once: the magic, the recorded LM and the payload
    magic = blob[:4]
    if magic == LM_MAGIC:
        from .lm_api import LmCompressor, recorded_model

        if args.model:
            raise ValueError(f"{args.input} was compressed with a pretrained LM, not a byte model: drop --model "
                             "(the file names its LM) or pass --lm SOURCE")
        from ...atomic import atomic_write_bytes

        source, dtype = recorded_model(blob, args.input)
        data = LmCompressor.load(args.lm or source, args.lm_dtype or dtype).decompress(blob, progress=True, source=args.input)
        atomic_write_bytes(args.output, data)
        size = len(data)
    elif magic == BYTE_MAGIC:
        from .api import decompress_file, load_byte_model

        if not args.model:
            raise ValueError(f"{args.input} was compressed with a byte model: pass --model CHECKPOINT "
                             "(the one it was compressed with)")
        size = decompress_file(args.input, args.output, load_byte_model(args.model))
    else:
        raise ContainerError(f"{args.input}: not a lightning_compress file (magic {magic!r}; expected {BYTE_MAGIC!r} "
                             f"for a byte model or {LM_MAGIC!r} for a pretrained LM)")
    print(f"{args.input} -> {args.output}: {size:,} bytes, sha256 verified")
    return 0


def _bench_codecs(args) -> int:
    from .bench import run_bench

    run_bench(args.model, args.overrides, args.out)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("compress", help="bytes: compress a file with a trained byte model or a pretrained LM "
                                        "(arithmetic coding)")
    p.add_argument("input")
    p.add_argument("output")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="ByteLM checkpoint (make train-bytes): byte-level coding")
    which.add_argument("--lm", help="a pretrained causal LM: embedded | hub id | model directory | .gguf file: "
                                    "token-level coding")
    p.add_argument("--batch", type=int, default=None,
                   help="chunks (byte model; default: its experiment's codecs.batch, else 64) or windows (LM, default 16) "
                        "coded in parallel (recorded in the file)")
    p.add_argument("--chunk-bytes", type=int, default=None, help="byte model: bytes per chunk (default: its context)")
    p.add_argument("--window", type=int, default=None, help="LM: tokens per window, each from a fresh context (default 1024)")
    p.add_argument("--lm-dtype", default="float32", choices=LM_DTYPES,
                   help="LM: weight dtype, recorded in the file (bfloat16 is faster on CPUs with AMX and on GPUs; "
                        "see README)")
    p.set_defaults(run=_compress)
    p = sub.add_parser("decompress", help="bytes: restore a file written by `lcompress compress`")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", help="byte-model files: the ByteLM checkpoint they were compressed with")
    p.add_argument("--lm", help="LM files: load this LM instead of the source the file names (same weights)")
    p.add_argument("--lm-dtype", default=None, choices=LM_DTYPES,
                   help="LM files: weight dtype (default: the one the file records)")
    p.set_defaults(run=_decompress)
    p = sub.add_parser("bench-codecs", help="bytes: byte model vs gzip/bzip2/xz/zstd/brotli/FLAC/PNG/JPEG-XL on held-out data")
    p.add_argument("--model", required=True, help="ByteLM checkpoint")
    p.add_argument("overrides", nargs="*", help="data.text=... data.images=... data.audio=... codecs.max_bytes=...")
    p.add_argument("--out", help="report folder (default: the run's bench_codecs/)")
    p.set_defaults(run=_bench_codecs)
