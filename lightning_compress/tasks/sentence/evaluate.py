"""Final evaluation of a sentence autoencoder on held-out sentences: for each storage precision,
token accuracy, exact match and BLEU of the greedy regenerations from the stored vectors, the
bytes a vector takes against the sentence's own UTF-8 / gzip / zstd bytes, accuracy by length,
a latent interpolation, and the parameter count against BERT-base and GPT-2 small."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from ...codecs import gzip_size, zstd_size
from ...metrics import sentence_bleu4
from ...reports import (finish_figure, mirror_to_tensorboard, new_figure, rows_markdown, write_figure, write_json,
                        write_table)
from .module import compare
from .params import size_report
from .precision import bytes_per_vector, load, store

PRECISION_COLUMNS = ["precision", "bytes_per_vector", "token_accuracy", "exact_match", "bleu"]


@torch.no_grad()
def evaluate(module, loader, precisions: list[str], main_precision: str, steps: int = 5) -> dict:
    module.eval()
    net, tokenizer = module.net, module.tokenizer
    device = next(net.parameters()).device
    per = {p: defaultdict(float) for p in precisions}
    by_length = defaultdict(lambda: [0, 0])  # tokens -> [right, total] at the main precision
    texts, vectors, samples = [], [], []
    utf8 = gz = zstd = 0
    for batch in loader:
        ids, lengths = batch["ids"].to(device), batch["lengths"].to(device)
        encoded = net.encode(ids, lengths)
        references = [row[:n] for row, n in zip(ids.tolist(), lengths.tolist())]
        for precision in precisions:
            stored = store(encoded, precision)
            outputs = net.generate(load(stored).to(device))
            right, total, exact = compare(references, outputs)
            decoded = [tokenizer.decode(o) for o in outputs]
            stats = per[precision]
            stats["right"] += right
            stats["total"] += total
            stats["exact"] += exact
            stats["bleu"] += sum(sentence_bleu4(t, d) for t, d in zip(batch["text"], decoded))
            stats["bytes"] += bytes_per_vector(stored) * len(references)
            if precision == main_precision:
                for reference, output in zip(references, outputs):
                    cell = by_length[len(reference)]
                    cell[0] += compare([reference], [output])[0]
                    cell[1] += len(reference) + 1
                samples += list(zip(batch["text"], decoded))
        for text in batch["text"]:
            data = text.encode("utf-8")
            utf8, gz, zstd = utf8 + len(data), gz + gzip_size(data), zstd + zstd_size(data)
        texts += batch["text"]
        vectors.append(encoded.cpu())
    count = len(texts)
    if not count:
        raise ValueError("no held-out sentences to evaluate (check data.source and the length limits)")
    rows = [{"precision": p, "bytes_per_vector": s["bytes"] / count, "token_accuracy": s["right"] / s["total"],
             "exact_match": s["exact"] / count, "bleu": s["bleu"] / count} for p, s in per.items()]
    main = next(r for r in rows if r["precision"] == main_precision)
    lengths = [{"tokens": n, "token_accuracy": r / t, "tokens_counted": t} for n, (r, t) in sorted(by_length.items())]
    metrics = {**{k: main[k] for k in PRECISION_COLUMNS[1:]}, "precision": main_precision, "sentences": count,
               "utf8_bytes_per_sentence": utf8 / count, "gzip_bytes_per_sentence": gz / count,
               "zstd_bytes_per_sentence": zstd / count, **size_report(net), "by_precision": rows, "by_length": lengths}
    vectors = torch.cat(vectors)
    interpolation = interpolate(module, vectors[0], vectors[-1], texts[0], texts[-1], steps) if count > 1 else []
    return {"metrics": metrics, "samples": samples, "interpolation": interpolation}


@torch.no_grad()
def interpolate(module, start: torch.Tensor, end: torch.Tensor, start_text: str, end_text: str, steps: int) -> list[dict]:
    device = next(module.net.parameters()).device
    weights = torch.linspace(0, 1, max(2, steps))
    mixed = torch.stack([(1 - w) * start + w * end for w in weights]).to(device)
    outputs, tokenizer = module.net.generate(mixed), module.tokenizer
    return [{"alpha": float(w), "from": start_text, "to": end_text, "decoded": tokenizer.decode(o)}
            for w, o in zip(weights, outputs)]


def figures(metrics: dict, title: str) -> dict:
    figure, axis = new_figure(6, 3.6)
    lengths = metrics["by_length"]
    axis.plot([r["tokens"] for r in lengths], [r["token_accuracy"] for r in lengths], marker="o",
              label=f"{metrics['precision']} vector")
    axis.set_ylim(-0.02, 1.02)
    by_length = finish_figure(figure, axis, "sentence length (tokens)", "token accuracy (greedy)", title)
    figure, axis = new_figure(6, 3.6)
    rows = sorted(metrics["by_precision"], key=lambda r: r["bytes_per_vector"])
    axis.plot([r["bytes_per_vector"] for r in rows], [r["token_accuracy"] for r in rows], marker="o", label="token accuracy")
    for r in rows:
        axis.annotate(r["precision"], (r["bytes_per_vector"], r["token_accuracy"]), fontsize=7)
    axis.axvline(metrics["utf8_bytes_per_sentence"], color="grey", ls=":", label="UTF-8 bytes of the sentence")
    axis.axvline(metrics["zstd_bytes_per_sentence"], color="black", ls="--", lw=0.8, label="zstd -19 of the sentence")
    axis.set_xscale("log")
    by_bytes = finish_figure(figure, axis, "bytes per vector", "token accuracy (greedy)", title, legend_size=7)
    return {"sentence/accuracy_vs_length": by_length, "sentence/accuracy_vs_bytes": by_bytes}


def write_results(result: dict, folder: Path, title: str, log_dir: Path | None = None) -> Path:
    """metrics.json, precision.{md,csv,json}, by_length.{md,csv,json}, samples.md, interpolation.md,
    two PNG figures; the same figures and tables in TensorBoard under `log_dir`."""
    metrics = result["metrics"]
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", metrics)
    write_table(folder, "precision", PRECISION_COLUMNS, metrics["by_precision"])
    write_table(folder, "by_length", ["tokens", "token_accuracy", "tokens_counted"], metrics["by_length"])
    samples = rows_markdown(["sentence", "regenerated"], [{"sentence": a, "regenerated": b} for a, b in result["samples"][:32]])
    interpolation = rows_markdown(["alpha", "decoded", "from", "to"], result["interpolation"])
    write_table(folder, "samples", ["sentence", "regenerated"], [], markdown=samples, json_rows=False)
    write_table(folder, "interpolation", ["alpha", "decoded", "from", "to"], result["interpolation"], markdown=interpolation)
    drawn = figures(metrics, title)
    for tag, figure in drawn.items():
        write_figure(folder / f"{tag.split('/')[-1]}.png", figure)
    if log_dir is not None:
        mirror_to_tensorboard(log_dir, drawn, {"sentence/precision": rows_markdown(PRECISION_COLUMNS, metrics["by_precision"]),
                                               "sentence/samples": samples, "sentence/interpolation": interpolation})
    return folder
