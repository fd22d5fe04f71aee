"""`lcompress bench-codecs --model CKPT [key=value ...]`: the byte model against the codecs.

On each modality's held-out data (whole held-out files until `codecs.max_bytes`; the held-out
tail of a single-file modality), every codec's compressed/raw ratio, chunked (each
`data.chunk_bytes` piece compressed on its own, the setting the byte model works in) and
unchunked (each file whole). The byte model really codes and decodes (round trip checked);
its ratio is given raw and counting its parameters at 2 bytes each (bf16), and its coded
size is compared with its cross-entropy bound (sum of -log2 p over the bytes / 8). With
`codecs.lm=embedded` (or any decoder source) a pretrained LM codes the held-out text too,
token by token, each item as one file (column unchunked: its windows are its own chunking).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...codecs import GENERAL
from ...config import ConfigError
from ...reports import markdown_table, mirror_to_tensorboard, new_figure, write_figure, write_table
from .api import decode_chunks, encode_chunks, load_byte_model
from .container import HEADER_SIZE
from .baselines import flac_size, jpegxl_size, png_size

PARAM_BYTES = 2  # parameters counted in bf16
COLUMNS = ["modality", "codec", "raw_bytes", "chunked_ratio", "unchunked_ratio"]


def heldout_items(dm, modality: str, max_bytes: int) -> list[dict]:
    """[{raw, pixels | samples+rate | None}] of held-out data, up to max_bytes raw bytes."""
    from data_modules.multimodal_bytes import load_pixels, load_samples, patch_bytes, pcm_bytes

    source = dm.chunks(modality, "heldout")
    items, total = [], 0
    if source.single_file:
        data = b"".join(source)[:max_bytes]
        return [{"raw": data}] if data else []
    for path in source.files:
        budget = max_bytes - total
        if budget <= 0:
            break
        # Files are taken whole while they fit; the last one is cut to the budget in its own
        # units (image rows of whole patches, audio frames), so every codec sees the same data.
        if modality == "images":
            h = source.image_patch[0]
            pixels = load_pixels(path, source.image_mode, source.image_patch)
            band = h * pixels.shape[1] * pixels.shape[2]
            pixels = pixels[: max(1, budget // band) * h]
            item = {"raw": patch_bytes(pixels, source.image_patch), "pixels": pixels}
        elif modality == "audio":
            samples, rate = load_samples(path)
            frame_bytes = samples.shape[1] * (2 if source.audio_bits == 16 else 1)
            samples = samples[: max(1, budget // frame_bytes)]
            item = {"raw": pcm_bytes(samples, source.audio_bits), "samples": samples, "rate": rate}
        else:
            item = {"raw": source.file_bytes(path)[:budget]}
        item["path"] = str(path)
        if item["raw"]:
            items.append(item)
            total += len(item["raw"])
    return items


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def codec_rows(modality: str, items: list[dict], chunk_bytes: int, image_patch, audio_bits: int) -> list[dict]:
    raw = sum(len(i["raw"]) for i in items)
    rows = []
    for name, size_of in GENERAL.items():
        chunked = sum(size_of(c) for i in items for c in _chunks(i["raw"], chunk_bytes))
        whole = sum(size_of(i["raw"]) for i in items)
        rows.append({"codec": name, "chunked": chunked, "unchunked": whole})
    if modality == "images":
        h, w = image_patch
        channels = items[0]["pixels"].shape[2] if items[0]["pixels"].ndim == 3 else 1
        # Chunked image codecs code each patch as a small image: only when a patch is a chunk.
        per_patch = h * w * channels == chunk_bytes
        for name, size_of in (("PNG", png_size), ("JPEG-XL lossless", jpegxl_size)):
            whole = sum(size_of(i["pixels"]) for i in items)
            chunked = None
            if per_patch:
                chunked = sum(size_of(np.frombuffer(c, np.uint8).reshape(h, w, channels))
                              for i in items for c in _chunks(i["raw"], chunk_bytes))
            rows.append({"codec": name, "chunked": chunked, "unchunked": whole})
    if modality == "audio" and audio_bits == 16:
        whole = sum(flac_size(i["samples"], i["rate"]) for i in items)
        chunked = 0
        for item in items:
            frames = chunk_bytes // (2 * item["samples"].shape[1])
            chunked += sum(flac_size(item["samples"][s : s + frames], item["rate"]) for s in range(0, len(item["samples"]), frames))
        rows.append({"codec": "FLAC -8", "chunked": chunked, "unchunked": whole})
    return [{"modality": modality, "raw_bytes": raw, **r} for r in rows]


def model_row(model, modality: str, items: list[dict], chunk_bytes: int, batch: int) -> dict:
    """Code every item's chunks (cut per item, as for the chunked codecs) as one batched
    stream with one container header, decode them back and check the round trip."""
    chunks = [c for item in items for c in _chunks(item["raw"], chunk_bytes)]
    raw = sum(len(c) for c in chunks)
    start = time.perf_counter()
    words, bound_bits = encode_chunks(model, chunks, batch, progress=True)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode_chunks(model, words, [len(c) for c in chunks], batch, progress=True)
    decode_s = time.perf_counter() - start
    if decoded != chunks:
        raise RuntimeError(f"{modality}: the byte model's round trip failed")
    coded = HEADER_SIZE + 4 * len(words)
    bound = bound_bits / 8
    return {
        "modality": modality, "codec": f"ByteLM {model.hparams.size}", "raw_bytes": raw, "chunked": coded,
        "unchunked": None, "with_params": coded + model.parameter_count() * PARAM_BYTES, "bound_bytes": bound,
        "coder_overhead": coded / bound - 1 if bound else 0.0,
        "compress_kb_s": raw / 1024 / encode_s, "decompress_kb_s": raw / 1024 / decode_s,
    }


def lm_row(lm, items: list[dict], window: int, batch: int) -> dict:
    """The held-out text coded by a pretrained LM, each item as one file (its windows are the
    LM's own chunking), decoded back and checked; sizes include each file's header."""
    coded = bound = 0.0
    encode_s = decode_s = 0.0
    for item in items:
        start = time.perf_counter()
        blob, stats = lm.compress(item["raw"], window, batch, progress=True)
        encode_s += time.perf_counter() - start
        start = time.perf_counter()
        if lm.decompress(blob, progress=True) != item["raw"]:
            raise RuntimeError("text: the LM's round trip failed")
        decode_s += time.perf_counter() - start
        coded += len(blob)
        bound += stats["bound_bytes"]
    raw = sum(len(i["raw"]) for i in items)
    weights = sum(p.numel() for p in lm.model.parameters())
    return {
        "modality": "text", "codec": f"LM {lm.backbone.source} {lm.dtype} (window {window})", "raw_bytes": raw, "chunked": None,
        "unchunked": int(coded), "with_params": int(coded) + weights * PARAM_BYTES, "bound_bytes": bound,
        "coder_overhead": coded / bound - 1 if bound else 0.0,
        "compress_kb_s": raw / 1024 / encode_s, "decompress_kb_s": raw / 1024 / decode_s,
    }


def bar_chart(rows: list[dict], title: str):
    modalities = list(dict.fromkeys(r["modality"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    figure, axis = new_figure(9, 4.5)
    width = 0.8 / len(codecs)
    for k, codec in enumerate(codecs):
        # The LM codes whole files in its own windows: its bar is its unchunked ratio.
        values = [next((r["chunked_ratio"] if r["chunked_ratio"] is not None else r["unchunked_ratio"] for r in rows
                        if r["modality"] == m and r["codec"] == codec
                        and (r["chunked_ratio"] is not None or r["codec"].startswith("LM "))), np.nan) for m in modalities]
        axis.bar(np.arange(len(modalities)) + k * width, values, width, label=codec)
    axis.set_xticks(np.arange(len(modalities)) + 0.4 - width / 2, modalities)
    axis.set_ylabel("compressed / raw (chunked), lower is better")
    axis.set_title(title)
    axis.legend(fontsize=7, ncol=2)
    axis.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def run_bench(checkpoint: str, overrides: list[str], out: str | None = None) -> list[dict]:
    from .train import byte_datamodule, stored_config

    model = load_byte_model(checkpoint)  # a GPU when there is one: the coding dominates the time
    cfg = stored_config(model, overrides)
    chunk = cfg.data.chunk_bytes
    if chunk > model.context:
        raise ConfigError(f"data.chunk_bytes={chunk} exceeds the model's context {model.context}")
    dm = byte_datamodule(cfg)
    rows = []
    for modality in dm.files:
        items = heldout_items(dm, modality, cfg.codecs.max_bytes)
        if not items:
            print(f"[bench] {modality}: no held-out file among {len(dm.files[modality])} (data.heldout_per_mille="
                  f"{cfg.data.heldout_per_mille}); left out of the table")
            continue
        print(f"[bench] {modality}: {sum(len(i['raw']) for i in items):,} held-out bytes from {len(items)} item(s)")
        rows += codec_rows(modality, items, chunk, list(cfg.data.image_patch), cfg.data.audio_bits)
        rows.append(model_row(model, modality, items, chunk, cfg.codecs.batch))
        if modality == "text" and cfg.codecs.lm:
            from .lm_api import LmCompressor

            rows.append(lm_row(LmCompressor.load(cfg.codecs.lm, cfg.codecs.lm_dtype), items, cfg.codecs.lm_window, cfg.codecs.lm_batch))
    for row in rows:
        row["chunked_ratio"] = row["chunked"] / row["raw_bytes"] if row["chunked"] is not None else None
        row["unchunked_ratio"] = row["unchunked"] / row["raw_bytes"] if row["unchunked"] is not None else None
        if "with_params" in row:
            row["ratio_with_params"] = row["with_params"] / row["raw_bytes"]
    folder = Path(out) if out else Path(checkpoint).resolve().parent.parent / "bench_codecs"
    write_report(folder, rows, f"{Path(checkpoint).name}: chunks of {chunk} bytes")
    return rows


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)


def report_markdown(rows: list[dict]) -> str:
    table = markdown_table(COLUMNS, [[_fmt(r.get(c)) for c in COLUMNS] for r in rows])
    models = [r for r in rows if "bound_bytes" in r]
    extra = markdown_table(
        ["modality", "model", "ratio with params (bf16)", "coded bytes", "bound bytes", "coder overhead", "compress KB/s", "decompress KB/s"],
        [[r["modality"], r["codec"], _fmt(r["ratio_with_params"]), _fmt(r["chunked"]), _fmt(round(r["bound_bytes"])),
          f"{100 * r['coder_overhead']:.3f}%", f"{r['compress_kb_s']:.1f}", f"{r['decompress_kb_s']:.1f}"] for r in models],
    )
    return table + "\n\n" + extra + "\n"


def write_report(folder: Path, rows: list[dict], title: str) -> None:
    text = report_markdown(rows)
    write_table(folder, "bench_codecs", COLUMNS, rows, markdown=text)
    figure = bar_chart(rows, title)
    write_figure(folder / "bench_codecs.png", figure)
    mirror_to_tensorboard(folder / "summary", {"bench_codecs/chunked_ratio": figure}, {"bench_codecs/table": text})
    print(text)
    print(f"written to {folder} (bench_codecs.md/.csv/.json/.png)")
