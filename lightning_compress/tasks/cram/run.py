"""`lcompress cram CONFIG [key=value ...]`: cram every text of the config, batch by batch.

Run folder <output_dir>/<name>/version_K/ holds, after every batch (atomically: a killed run
never leaves half a line or half a file):
- results.jsonl: one line per text (text_index, length, vectors, mode, token_accuracy,
  exact_greedy, greedy_prefix, ce_before_bits, ce_after_bits, info_gain_bits, gain_tokens,
  steps, seconds, stopped, text);
- vectors.pt: the vectors of every finished text (`lcompress cram-decode` reads it);
and at the end results.{md,csv,json} (per text, then the means), gain_vs_ce.png, and the
same in TensorBoard. `resume=true` continues the latest run of the name without redoing
the texts it has finished.

Several processes (torchrun / srun, through a Lightning Fabric) share the texts: rank r of
w crams texts r, r+w, ... into results.rank<r>.jsonl, and rank 0 merges them once all are
done. A resumed multi-process run needs the same number of processes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from ...atomic import atomic_write_text
from ...config import ConfigError, config_to_dict
from ...distributed import launcher_world
from ...reports import (
    finish_figure, mirror_to_tensorboard, new_figure, rows_markdown, write_figure, write_json, write_table,
)
from ...run_dir import plan_run
from .config import TASK
from .texts import load_texts
from .vectors import ids_sha256, load_vectors, save_vectors

COLUMNS = ["text_index", "length", "vectors", "mode", "token_accuracy", "exact_greedy", "greedy_prefix",
           "ce_before_bits", "ce_after_bits", "info_gain_bits", "gain_tokens", "steps", "seconds"]
MEANS = ["token_accuracy", "exact_greedy", "greedy_prefix", "ce_before_bits", "ce_after_bits", "info_gain_bits",
         "gain_tokens", "steps", "seconds"]


def _read_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _resumable(run_dir: Path) -> list[Path]:
    return [p for p in (run_dir / "results.jsonl", *sorted(run_dir.glob("results.rank*.jsonl"))) if p.is_file()]


def resolve_dtype(name: str) -> str:
    if name == "auto":
        return "bfloat16" if torch.cuda.is_available() else "float32"
    return name


def check_fits(cfg: DictConfig, model) -> None:
    context = getattr(model.config, "max_position_embeddings", None)
    needed = cfg.cram.vectors + cfg.cram.length + 1
    if context is not None and needed > context:
        raise ConfigError(f"cram.length={cfg.cram.length} with cram.vectors={cfg.cram.vectors} needs {needed} positions, "
                          f"beyond the model's context of {context} (max_position_embeddings)")


# Keys a resumed run may change: they do not change what a finished text's result means.
RESUMABLE_CHANGES = ("resume", "data.num_texts", "cram.batch_size", "output_dir", "name")


def check_same_run(stored: dict, current: dict, run_dir: Path) -> None:
    """Refuse to resume a run folder under a config that would mix incomparable results."""
    from ...config import flatten

    stored, current = flatten(stored), flatten(current)
    changed = sorted(k for k in set(stored) | set(current)
                     if not k.startswith(RESUMABLE_CHANGES) and stored.get(k) != current.get(k))
    if changed:
        raise ConfigError(f"resume: {run_dir} was run with other settings ({', '.join(f'{k}={stored.get(k)!r}' for k in changed[:4])}); "
                          "start a new run (resume=false) or use the same settings")


def given_bos(setting, tokenizer) -> int | None:
    """The BOS id given before the text, or None when the text's own first token is given."""
    bos = tokenizer.bos_token_id
    if setting == "auto":
        return bos if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] else None
    if setting and bos is None:
        raise ConfigError("cram.bos=true but the tokenizer has no BOS token; use cram.bos=auto or false")
    return bos if setting else None


def cram_texts(cfg: DictConfig, backbone, texts: list, results_path: Path, vectors_path: Path, progress=True) -> list[dict]:
    """Cram `texts` batch by batch; each text's result is appended to results_path / vectors_path
    as soon as its row stops, not at the end of its batch."""
    from .measure import score
    from .optimise import cram_batch

    model, c = backbone.decoder, cfg.cram
    bos_id = given_bos(c.bos, backbone.tokenizer)
    identity = {"source": backbone.source, "fingerprint": backbone.fingerprint, "dtype": resolve_dtype(cfg.decoder.dtype)}
    rows, entries = _read_lines(results_path), load_vectors(vectors_path) if vectors_path.is_file() else []
    done = {r["text_index"] for r in rows}
    entries = [e for e in entries if e["text_index"] in done]  # a kill between the two writes
    todo = [t for t in texts if t.index not in done]
    if done:
        print(f"[cram] resuming: {len(done)} texts done, {len(todo)} to go")
    for start in range(0, len(todo), c.batch_size):
        batch = todo[start : start + c.batch_size]
        ids = torch.tensor([t.ids for t in batch])
        began = time.perf_counter()

        def finished(j: int, result, batch=batch, ids=ids) -> None:
            text = batch[j]
            scored = score(model, ids[j : j + 1], result.vectors[None], bos_id)[0]
            row = {"text_index": text.index, "length": len(text.ids), "vectors": c.vectors, "mode": c.mode, **scored,
                   "steps": result.steps, "seconds": result.seconds, "stopped": result.stopped, "text": text.text}
            rows.append(row)
            entries.append({"text_index": text.index, "bos": bos_id is not None,
                            "first_token": bos_id if bos_id is not None else text.ids[0],
                            "predicted_tokens": scored["predicted_tokens"], "sha256": ids_sha256(text.ids),
                            "vectors": result.vectors})
            # Both files are rewritten whole, through a temporary file and a rename: never half a line.
            save_vectors(vectors_path, identity, entries)
            atomic_write_text(results_path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                    for r in sorted(rows, key=lambda r: r["text_index"])))
            tqdm.write(f"[cram] text {text.index}: {row['length']} tokens, k={c.vectors}, accuracy "
                       f"{row['token_accuracy']:.3f}, exact greedy {'yes' if row['exact_greedy'] else 'no'} "
                       f"({row['greedy_prefix']} tokens), gain {row['info_gain_bits']:.1f} bits of "
                       f"{row['ce_before_bits']:.1f}, {row['steps']} steps ({row['stopped']}); "
                       f"{len(rows)}/{len(texts)} texts done")

        cram_batch(model, ids, [t.index for t in batch], vectors=c.vectors, mode=c.mode, max_steps=c.max_steps,
                   lr=c.lr, betas=list(c.betas), weight_decay=c.weight_decay, patience=c.patience, bos_id=bos_id,
                   seed=cfg.seed, progress=progress, on_finished=finished)
        print(f"[cram] batch of {len(batch)} in {time.perf_counter() - began:.0f} s; {len(rows)}/{len(texts)} texts done")
    rows.sort(key=lambda r: r["text_index"])
    return rows


def summary(rows: list[dict]) -> dict:
    return {k: sum(float(r[k]) for r in rows) / len(rows) for k in MEANS} if rows else {}


def gain_figure(rows: list[dict], title: str):
    """Information gain vs the text's cross-entropy without memory (the paper's main plot):
    points on the diagonal are texts crammed completely."""
    figure, axis = new_figure()
    for exact, colour, label in ((True, "tab:green", "exact greedy"), (False, "tab:red", "not exact")):
        points = [(r["ce_before_bits"], r["info_gain_bits"]) for r in rows if bool(r["exact_greedy"]) == exact]
        if points:
            axis.scatter([p[0] for p in points], [p[1] for p in points], s=14, c=colour, label=label)
    top = max([r["ce_before_bits"] for r in rows] + [1.0])
    axis.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="gain = CE (all of it)")
    return finish_figure(figure, axis, "cross-entropy of the text without memory (bits)", "information gain (bits)", title)


def write_summary(run_dir: Path, rows: list[dict], cfg: DictConfig) -> dict:
    rows = sorted(rows, key=lambda r: r["text_index"])
    means = summary(rows)
    table = rows + [{"text_index": "mean", **means}]
    write_table(run_dir, "results", COLUMNS, [{c: r.get(c) for c in COLUMNS} for r in table])
    write_json(run_dir / "summary.json", means)
    title = f"{cfg.decoder.source}: {cfg.cram.length} tokens, k={cfg.cram.vectors}, {cfg.cram.mode}"
    figure = gain_figure(rows, title)
    write_figure(run_dir / "gain_vs_ce.png", figure)
    samples = rows_markdown(["text_index", "exact_greedy", "text"], rows[:8])
    # Per-text scalars, the text index on the x axis.
    series = {f"cram/{key}": [(r["text_index"], float(r[key])) for r in rows]
              for key in ("token_accuracy", "exact_greedy", "greedy_prefix", "info_gain_bits", "steps")}
    mirror_to_tensorboard(run_dir, {"cram/gain_vs_ce": figure},
                          {"cram/results": rows_markdown(COLUMNS, table), "cram/texts": samples}, scalars=series)
    return means


def _launch(world: int, local: int):
    """Under torchrun / srun: a Lightning Fabric over the launcher's processes (it sets up
    the process group and the device of this rank)."""
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator="auto", devices=local, num_nodes=max(1, world // local), strategy="ddp")
    fabric.launch()
    return fabric


def run_cram(cfg: DictConfig, progress: bool = True) -> dict:
    """The whole command; returns {"metrics": means, "run_dir"} on rank 0 ({} elsewhere)."""
    from ...backbone import load_configured_backbone

    if cfg.task != TASK:
        raise ConfigError(f"lcompress cram needs a `task: cram` experiment, not task={cfg.task!r} (use lcompress train)")
    rank, world, local = launcher_world()
    fabric = _launch(world, local) if world > 1 else None
    # Rank 0 picks the run folder and tells the others, so that all write into the same one.
    version = plan_run(cfg, resumable=_resumable, what="a results.jsonl")[0] if rank == 0 else None
    version = fabric.broadcast(version, 0) if fabric else version
    run_dir = Path(cfg.output_dir) / cfg.name / f"version_{version}"
    torch.manual_seed(cfg.seed)
    backbone = load_configured_backbone(cfg.decoder, resolve_dtype(cfg.decoder.dtype))
    check_fits(cfg, backbone.decoder)
    if fabric is not None:
        backbone.decoder.to(fabric.device)
    elif torch.cuda.is_available():
        backbone.decoder.cuda()
    texts, report = load_texts(cfg, backbone.tokenizer)
    if rank == 0 and (run_dir / "config.json").is_file():
        check_same_run(json.loads((run_dir / "config.json").read_text(encoding="utf-8")), config_to_dict(cfg), run_dir)
    if rank == 0:
        print(f"[cram] {report}\n[cram] run folder {run_dir}" + (f"; texts shared by {world} processes" if fabric else ""))
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", config_to_dict(cfg))
    suffix = f".rank{rank}" if fabric else ""
    mine = texts[rank::world]  # rank r of w takes texts r, r + w, ...
    rows = cram_texts(cfg, backbone, mine, run_dir / f"results{suffix}.jsonl", run_dir / f"vectors{suffix}.pt", progress)
    if fabric is not None:
        fabric.barrier()
        if rank != 0:
            return {}
        rows = [row for r in range(world) for row in _read_lines(run_dir / f"results.rank{r}.jsonl")]
        entries = [e for r in range(world) for e in load_vectors(run_dir / f"vectors.rank{r}.pt")]
        save_vectors(run_dir / "vectors.pt", entries[0]["model"] if entries else {}, entries)
        atomic_write_text(run_dir / "results.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                          for r in sorted(rows, key=lambda r: r["text_index"])))
    means = write_summary(run_dir, rows, cfg)
    print(rows_markdown(["texts"] + MEANS, [{"texts": len(rows), **means}]))
    print(f"results: {run_dir / 'results.jsonl'} (+ results.md, gain_vs_ce.png)\nvectors: {run_dir / 'vectors.pt'} "
          f"(lcompress cram-decode {run_dir / 'vectors.pt'})\nTensorBoard: tensorboard --logdir {cfg.output_dir}")
    config = backbone.decoder.config
    return {"metrics": {"texts": len(rows), **means, "hidden_size": config.hidden_size, "vocab_size": config.vocab_size},
            "run_dir": str(run_dir)}
