"""The batched cramming optimiser on a tiny steerable LM: vectors that regenerate the text,
a frozen LM, rows independent of their batch, finished rows that stop, progressive windows
that never pass a wrong prefix, and information gain by hand."""

import math

import torch
import torch.nn.functional as F

from lightning_compress.tasks.cram.measure import greedy_tokens, score
from lightning_compress.tasks.cram.optimise import cram_batch, inputs_and_targets, memory_logits

BOS = 1


def _ids(rows: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, 59, (rows, length), generator=torch.Generator().manual_seed(seed))


def _cram(model, ids, indexes=None, **options):
    settings = dict(vectors=2, mode="full", max_steps=300, lr=0.05, bos_id=BOS, progress=False)
    settings.update(options)
    return cram_batch(model, ids, indexes or list(range(len(ids))), **settings)


def test_vectors_regenerate_the_text_exactly(tiny_lm):
    model, _ = tiny_lm
    ids = _ids(3, 8)
    results = _cram(model, ids)
    assert all(r.stopped == "exact" and r.accuracy == 1.0 for r in results)
    scores = score(model, ids, torch.stack([r.vectors for r in results]), BOS)
    assert all(s["exact_greedy"] and s["greedy_prefix"] == 8 for s in scores)
    generated = greedy_tokens(model, results[0].vectors[None], torch.tensor([[BOS]]), 8)
    assert torch.equal(generated[0], ids[0])


def test_the_lm_never_changes_and_gets_no_gradient(tiny_lm):
    model, _ = tiny_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _cram(model, _ids(2, 8), max_steps=20)
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_row_in_a_batch_follows_the_trajectory_it_follows_alone(tiny_lm):
    model, _ = tiny_lm
    ids = _ids(3, 12, seed=5)
    batched = cram_batch(model, ids, [10, 11, 12], vectors=1, mode="full", max_steps=6, lr=0.05, bos_id=BOS, progress=False)
    for row in range(3):
        alone = cram_batch(model, ids[row : row + 1], [10 + row], vectors=1, mode="full", max_steps=6, lr=0.05,
                           bos_id=BOS, progress=False)[0]
        assert alone.steps == batched[row].steps
        assert torch.allclose(alone.vectors, batched[row].vectors, atol=1e-5), f"row {row} depends on its batch"


def test_a_finished_row_leaves_the_batch_and_stops_changing(tiny_lm):
    model, _ = tiny_lm
    ids = _ids(3, 8, seed=2)
    alone = [_cram(model, ids[r : r + 1], [r])[0] for r in range(3)]
    trace, finished = [], []
    together = cram_batch(model, ids, [0, 1, 2], vectors=2, mode="full", max_steps=300, lr=0.05, bos_id=BOS,
                          progress=False, trace=trace, on_finished=lambda row, result: finished.append((row, result,
                                                                                                      len(trace))))
    # Each row is handed over as it stops, while the others are still being optimised.
    assert sorted(row for row, _, _ in finished) == [0, 1, 2]
    assert [result.steps for _, result, _ in finished] == sorted(r.steps for r in alone)
    first_row, first_result, traced_then = finished[0]
    assert first_result is together[first_row] and traced_then < len(trace)
    steps = sorted({r.steps for r in alone})
    assert len(steps) > 1, "the rows finish together: no row leaves early"
    for row in range(3):
        assert together[row].stopped == "exact" and together[row].steps == alone[row].steps
        assert torch.allclose(together[row].vectors, alone[row].vectors, atol=1e-5)
        # Traced (optimised) up to its own last step only: then it left the batch.
        assert max(step for step, r, _, _ in trace if r == row) == alone[row].steps


def test_information_gain_by_hand(tiny_lm):
    model, _ = tiny_lm
    ids = _ids(1, 5, seed=7)
    vectors = torch.randn(1, 2, model.config.hidden_size) * 0.1
    inputs, targets = inputs_and_targets(ids, BOS)
    assert torch.equal(inputs[0, 1:], ids[0, :-1]) and inputs[0, 0] == BOS and torch.equal(targets, ids)

    def bits(prefix):
        embeds = model.get_input_embeddings()(inputs)
        if prefix is not None:
            embeds = torch.cat([prefix, embeds], 1)
        logp = F.log_softmax(model(inputs_embeds=embeds).logits[0, -5:].double(), -1)
        return -sum(float(logp[t, targets[0, t]]) for t in range(5)) / math.log(2)

    with torch.no_grad():
        before, after = bits(None), bits(vectors)
    result = score(model, ids, vectors, BOS)[0]
    assert abs(result["ce_before_bits"] - before) < 1e-3 and abs(result["ce_after_bits"] - after) < 1e-3
    assert abs(result["info_gain_bits"] - (before - after)) < 1e-3
    assert torch.allclose(memory_logits(model, vectors, inputs), memory_logits(model, vectors, inputs))


def test_progressive_never_trains_past_a_wrong_prefix(tiny_lm):
    model, _ = tiny_lm
    trace = []
    results = _cram(model, _ids(2, 10, seed=8), mode="progressive", vectors=1, max_steps=400, trace=trace)
    assert trace, "no steps traced"
    previous = {}
    for step, row, prefix, window in trace:
        grew = window > previous.get(row, 1)
        # The window moves on only when every target before its new last one is right.
        assert not grew or prefix >= window - 1, f"row {row} step {step}: window {window} past a wrong prefix {prefix}"
        assert window <= prefix + 1 or window == previous.get(row, 1)
        previous[row] = window
    assert max(w for _, _, _, w in trace) > 1, "the window never grew"
    assert all(r.prefix == r.accuracy * 10 or r.stopped != "exact" for r in results)
