"""The byte task's verbs: `lcompress compress | decompress | bench-codecs`."""

from __future__ import annotations


def _compress(args) -> int:
    from .api import compress_file, load_byte_model

    model = load_byte_model(args.model)
    stats = compress_file(args.input, args.output, model, batch=args.batch, chunk_bytes=args.chunk_bytes)
    raw, packed = stats["raw_bytes"], stats["compressed_bytes"]
    print(f"{args.input}: {raw:,} -> {packed:,} bytes ({packed / max(raw, 1):.4f}), model bound {stats['bound_bytes']:,.0f} "
          f"bytes, {raw / 1024 / stats['seconds']:.1f} KB/s -> {args.output}")
    return 0


def _decompress(args) -> int:
    from .api import decompress_file, load_byte_model

    model = load_byte_model(args.model)
    size = decompress_file(args.input, args.output, model)
    print(f"{args.input} -> {args.output}: {size:,} bytes, sha256 verified")
    return 0


def _bench_codecs(args) -> int:
    from .bench import run_bench

    run_bench(args.model, args.overrides, args.out)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("compress", help="bytes: compress a file with a trained byte model (arithmetic coding)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", required=True, help="ByteLM checkpoint (make train-bytes)")
    p.add_argument("--batch", type=int, default=64, help="chunks coded in parallel (recorded in the file)")
    p.add_argument("--chunk-bytes", type=int, default=None, help="default: the model's context (2048)")
    p.set_defaults(run=_compress)
    p = sub.add_parser("decompress", help="bytes: restore a file written by `lcompress compress`")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", required=True, help="the ByteLM checkpoint it was compressed with")
    p.set_defaults(run=_decompress)
    p = sub.add_parser("bench-codecs", help="bytes: byte model vs gzip/bzip2/xz/zstd/brotli/FLAC/PNG/JPEG-XL on held-out data")
    p.add_argument("--model", required=True, help="ByteLM checkpoint")
    p.add_argument("overrides", nargs="*", help="data.text=... data.images=... data.audio=... codecs.max_bytes=...")
    p.add_argument("--out", help="report folder (default: the run's bench_codecs/)")
    p.set_defaults(run=_bench_codecs)
