"""Regenerate a held-out split from a trained compressor and score it.

Writes, atomically, into one folder: metrics.json, metrics.csv, metrics.md (one row per
(n, m)) and regenerations.jsonl (reference and output of every sample).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ...atomic import atomic_write_text
from ...metrics import regeneration_metrics
from ...reports import rows_markdown, write_json, write_table

COLUMNS = [
    "encoder", "n", "m", "ratio", "bleu", "corpus_bleu", "exact_match", "prefix_match", "rouge_l", "rouge_l_paper",
    "token_accuracy", "distinct_outputs", "samples", "trainable_params",
]


@torch.no_grad()
def evaluate(module, datamodule, split: str = "test", num_samples: int = 64, batch_size: int = 16) -> dict:
    module.eval()
    dataset = datamodule.dataset(split, limit=num_samples, rank=0, world_size=1)
    references, candidates, correct, total = [], [], 0.0, 0
    batch: list = []

    def flush():
        nonlocal correct, total
        ids = torch.stack([e["input_ids"] for e in batch]).to(module.device)
        memory = module.compress(ids)
        _, accuracy = module.loss_and_accuracy(ids, memory)
        correct += float(accuracy) * ids.numel()
        total += ids.numel()
        references.extend(module.decode(ids.tolist()))
        candidates.extend(module.regenerate_memory(memory))
        batch.clear()

    with tqdm(total=num_samples, desc=f"regenerating {split}", unit="prompt") as bar:
        for example in dataset:
            batch.append(example)
            if len(batch) == batch_size:
                flush()
                bar.update(batch_size)
        if batch:
            bar.update(len(batch))
            flush()
    if not references:
        raise ValueError(
            f"the {split} split of data.source={datamodule.source!r} has no text with at least "
            f"{datamodule.n_tokens} tokens"
        )
    scores = regeneration_metrics(references, candidates)
    n, m = module.n_tokens, module.memory_tokens
    row = {
        "encoder": module.cfg.model.encoder.name,
        "n": n,
        "m": m,
        "ratio": n / m,
        **{k: scores[k] for k in ("bleu", "corpus_bleu", "exact_match", "prefix_match", "rouge_l", "rouge_l_paper")},
        "token_accuracy": correct / total,
        "distinct_outputs": scores["distinct_outputs"],
        "samples": scores["samples"],
        "trainable_params": module.encoder.trainable_parameter_count(),
    }
    samples = [{"reference": r, "regenerated": c} for r, c in zip(references, candidates)]
    return {"metrics": row, "samples": samples}


def metrics_table(row: dict) -> str:
    return rows_markdown(COLUMNS, [row])


def write_results(folder: str | os.PathLike, results: dict) -> Path:
    folder = Path(folder)
    write_table(folder, "metrics", COLUMNS, [results["metrics"]], json_rows=False)
    write_json(folder / "metrics.json", results["metrics"])
    lines = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in results["samples"])
    atomic_write_text(folder / "regenerations.jsonl", lines)
    return folder
