"""Batched per-text optimisation of memory vectors for a frozen causal LM.

Each text of a batch is one row with its own k vectors. The loss is the SUM over rows of
each row's mean cross-entropy, so a row's gradient depends on its own text only, and
AdamW's update is elementwise: each row follows exactly the trajectory it would follow
alone (up to float rounding of the batched matmuls). A row that is done (every token
right under teacher forcing), out of patience or out of steps leaves the batch: its rows
of the parameter and of AdamW's moment estimates are cut out, so it stops costing compute.

Layout (first token given, as in the paper): with BOS the LM reads
[m_1..m_k, BOS, t_1..t_{L-1}] and predicts t_1..t_L; without BOS it reads
[m_1..m_k, t_1..t_{L-1}] and predicts t_2..t_L. The memory sits at positions 0..k-1.

Modes: `full` (the paper) trains on all L targets. `progressive` trains on the targets up to
and including the first one that teacher-forced argmax gets wrong, and only extends that
window once everything before it is right: all teacher-forced argmaxes right on a prefix is
exactly "greedy decoding reproduces the prefix", since greedy decoding then feeds back the
same tokens teacher forcing does.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class RowResult:
    vectors: torch.Tensor  # [k, d] float32 on CPU: the best vectors seen
    accuracy: float  # teacher-forced token accuracy of those vectors
    prefix: int  # leading targets right under teacher forcing (= greedy-exact prefix)
    steps: int  # optimiser steps taken before the row stopped
    seconds: float
    stopped: str  # exact | max_steps | patience


def inputs_and_targets(ids: torch.Tensor, bos_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L] text ids -> (inputs, targets), the first token given (BOS if there is one)."""
    if bos_id is None:
        return ids[:, :-1], ids[:, 1:]
    bos = torch.full((ids.shape[0], 1), bos_id, dtype=ids.dtype, device=ids.device)
    return torch.cat([bos, ids[:, :-1]], 1), ids


def memory_logits(model, memory: torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
    """Logits at the text positions of [memory; embed(inputs)], [B, T, V]."""
    embeds = model.get_input_embeddings()(inputs)
    if memory is not None:
        embeds = torch.cat([memory.to(embeds.dtype), embeds], 1)
    return model(inputs_embeds=embeds, use_cache=False).logits[:, -inputs.shape[1]:]


def initial_vectors(count: int, d: int, std: float, seed: int, index: int) -> torch.Tensor:
    """randn x std(embedding), from a generator seeded by (seed, text index): a text gets
    the same start whatever batch it is in."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{index}".encode()))
    return torch.randn(count, d, generator=generator) * std


def leading_correct(correct: torch.Tensor) -> torch.Tensor:
    """[B, T] bool -> [B] number of leading True."""
    return correct.long().cumprod(1).sum(1)


def _compact(memory: torch.Tensor, optimizer: torch.optim.Optimizer, keep: torch.Tensor, make_optimizer):
    """The parameter, its gradient and AdamW's state restricted to the rows in `keep`."""
    state = optimizer.state[memory]
    kept = memory.detach()[keep].clone().requires_grad_(True)
    kept.grad = memory.grad[keep].clone()
    new = make_optimizer(kept)
    if state:
        new.state[kept] = {
            "step": state["step"].clone(),
            "exp_avg": state["exp_avg"][keep].clone(),
            "exp_avg_sq": state["exp_avg_sq"][keep].clone(),
        }
    return kept, new


def cram_batch(model, ids: torch.Tensor, indexes: list[int], *, vectors: int, mode: str, max_steps: int, lr: float,
               betas=(0.9, 0.9), weight_decay: float = 0.01, patience: int = 0, bos_id: int | None = None,
               seed: int = 0, progress: bool = True, trace: list | None = None, on_finished=None) -> list[RowResult]:
    """Optimise `vectors` memory vectors for each row of `ids` [B, L]; `indexes` are the
    texts' stable indexes (they seed each row's initial vectors). `trace`, if given, gets
    (step, row, teacher-forced prefix, target window) of every row at every step.
    `on_finished(row, result)`, if given, is called as each row stops, while the others go on
    (so a caller can save it: a long batch then loses no finished row to an interruption)."""
    device = next(model.parameters()).device
    ids = ids.to(device)
    inputs, targets = inputs_and_targets(ids, bos_id)
    rows, length = targets.shape
    weight = model.get_input_embeddings().weight
    std = float(weight.float().std())
    start = torch.stack([initial_vectors(vectors, weight.shape[1], std, seed, i) for i in indexes])
    memory = start.to(device).requires_grad_(True)

    def make_optimizer(param):
        return torch.optim.AdamW([param], lr=lr, betas=tuple(betas), weight_decay=weight_decay)

    optimizer = make_optimizer(memory)
    active = list(range(rows))  # original row of each row of `memory`
    window = [1 if mode == "progressive" else length] * rows  # targets trained on, per row
    best_score = [(-1.0, -1)] * rows
    best: list[RowResult | None] = [None] * rows
    last_gain = [0] * rows
    results: list[RowResult | None] = [None] * rows
    began = time.perf_counter()
    bar = tqdm(total=max_steps, desc=f"cramming {rows} texts", unit="step", disable=not progress, leave=False)
    for step in range(max_steps + 1):
        act = torch.tensor(active, device=device)
        logits = memory_logits(model, memory, inputs[act])
        losses = F.cross_entropy(logits.float().transpose(1, 2), targets[act], reduction="none")  # [b, T]
        with torch.no_grad():
            correct = logits.argmax(-1) == targets[act]
            accuracy = correct.float().mean(1).tolist()
            prefix = leading_correct(correct).tolist()
        keep = []
        for j, row in enumerate(active):
            # full: best by accuracy; progressive: by the greedy-exact prefix.
            score = (accuracy[j], prefix[j]) if mode == "full" else (prefix[j], accuracy[j])
            if score > best_score[row]:
                best_score[row], last_gain[row] = score, step
                best[row] = RowResult(memory[j].detach().float().cpu().clone(), accuracy[j], prefix[j], step, 0.0, "")
            if mode == "progressive" and prefix[j] >= window[row]:
                window[row] = min(length, prefix[j] + 1)  # everything before it right: move on
            if trace is not None:
                trace.append((step, row, prefix[j], window[row]))
            stop = "exact" if prefix[j] == length else "max_steps" if step == max_steps else \
                "patience" if patience and step - last_gain[row] >= patience else None
            if stop:
                results[row] = RowResult(best[row].vectors, best[row].accuracy, best[row].prefix, step,
                                         time.perf_counter() - began, stop)
                if on_finished is not None:
                    on_finished(row, results[row])
            else:
                keep.append(j)
        if mode == "full":
            bar.set_postfix(rows=len(keep), mean_best_accuracy=f"{sum(s[0] for s in best_score) / rows:.3f}")
        else:
            bar.set_postfix(rows=len(keep), mean_exact_prefix=f"{sum(s[0] for s in best_score) / rows:.1f}")
        if not keep:
            break
        limits = torch.tensor([window[row] for row in active], device=device)
        mask = (torch.arange(length, device=device)[None, :] < limits[:, None]).float()
        loss = ((losses * mask).sum(1) / mask.sum(1))[keep].sum()
        memory.grad = None
        loss.backward()
        if len(keep) < len(active):
            memory, optimizer = _compact(memory, optimizer, torch.tensor(keep, device=device), make_optimizer)
            active = [active[j] for j in keep]
        optimizer.step()
        bar.update(1)
    bar.close()
    return results
