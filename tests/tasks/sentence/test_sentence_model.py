"""The sentence autoencoder: the decoder sees only the vector and its own outputs, a tiny model
overfits a few sentences exactly, and stored vectors have the size and error they claim."""

import pytest
import torch

from lightning_compress.tasks.sentence.model import SentenceAutoencoder
from lightning_compress.tasks.sentence.module import compare
from lightning_compress.tasks.sentence.precision import bytes_per_vector, fake_quantize, load, round_trip, store

SENTENCES = ["The cat sat.", "A dog ran far away.", "Vectors hold text.", "Tiny models learn!"]


def _batch(sentences):
    rows = [list(s.encode()) for s in sentences]
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), 257)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, lengths, rows


def _model(**kw):
    torch.manual_seed(0)
    return SentenceAutoencoder(256, width=kw.pop("width", 32), layers=1, heads=4, max_tokens=24, **kw).eval()


@pytest.mark.parametrize("pooling, conditioning", [("mean", "first"), ("query", "first"), ("first", "first"),
                                                   ("mean", "every")])
def test_the_decoder_reads_only_the_vector_and_its_own_outputs(pooling, conditioning):
    net = _model(pooling=pooling, conditioning=conditioning)
    ids, lengths, _ = _batch(SENTENCES[:2])
    vectors = net.encode(ids, lengths)
    seen = []
    net.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    outputs = net.generate(vectors, max_tokens=5)
    for step, inputs in enumerate(seen):
        previous = torch.tensor([o[:step] + [net.eos] * (step - len(o[:step])) for o in outputs]) if step else \
            torch.empty(2, 0, dtype=torch.long)
        expected = torch.cat([vectors[:, None], net.embed(previous)], 1) + net.decoder_positions(torch.arange(step + 1))
        if conditioning == "every":  # the vector again, at every position: still nothing but the vector
            expected = expected + net.condition(vectors)[:, None]
        assert torch.allclose(inputs, expected, atol=1e-6), step
    # Changing the input tokens after encoding changes nothing the decoder produces.
    ids[:] = 0
    assert net.generate(vectors, max_tokens=5) == outputs
    assert not torch.allclose(net.encode(ids, lengths), vectors)


@pytest.mark.parametrize("conditioning", ["first", "every"])
def test_a_tiny_model_overfits_a_few_sentences_exactly(conditioning):
    net = _model(width=64, conditioning=conditioning).train()
    ids, lengths, rows = _batch(SENTENCES)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for step in range(600):
        logits, targets = net(ids, lengths)
        keep = targets != net.pad
        loss = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 49:
            net.eval()
            outputs = net.generate(net.encode(ids, lengths))
            net.train()
            if outputs == rows:
                break
    assert outputs == rows, f"not exact after {step + 1} steps: {[bytes(o) for o in outputs]}"
    assert compare(rows, outputs) == (sum(len(r) + 1 for r in rows), sum(len(r) + 1 for r in rows), len(rows))


@pytest.mark.parametrize("precision, size", [("float32", 4 * 48), ("float16", 2 * 48), ("bfloat16", 2 * 48),
                                             ("int8", 48 + 4)])
def test_the_reported_vector_size_is_the_tensors_real_size(precision, size):
    vectors = torch.randn(5, 48)
    stored = store(vectors, precision)
    real = sum(t.element_size() * t.numel() for t in stored.values()) / 5
    assert bytes_per_vector(stored) == real == size


def test_int8_round_trip_stays_within_half_a_step_of_its_scale():
    vectors = torch.randn(7, 64) * torch.rand(7, 1) * 10
    stored = store(vectors, "int8")
    error = (load(stored) - vectors).abs()
    assert bool((error <= stored["scale"] / 2 + 1e-6).all())
    assert stored["values"].dtype == torch.int8 and stored["scale"].shape == (7, 1)


def test_quantization_aware_training_passes_gradients_straight_through():
    vectors = torch.randn(3, 16, requires_grad=True)
    out = fake_quantize(vectors, "int8")
    assert torch.allclose(out, round_trip(vectors, "int8"))
    out.sum().backward()
    assert torch.equal(vectors.grad, torch.ones(3, 16))


def test_compare_counts_eos_and_early_stops():
    assert compare([[1, 2, 3]], [[1, 2]]) == (2, 4, 0)  # the missing 3 and the early EOS
    assert compare([[1, 2]], [[1, 2, 3]]) == (2, 3, 0)


def test_unk_is_never_generated():
    net = _model(unk=7)
    ids, lengths, _ = _batch(SENTENCES[:2])
    vectors = net.encode(ids, lengths)
    bias = torch.zeros(net.vocab + 2)
    bias[7] = 1e4  # UNK would win every step
    net.head.register_forward_hook(lambda module, args, out: out + bias)
    assert all(7 not in o for o in net.generate(vectors, max_tokens=6))
    net.unk = None  # without the mask UNK is all it says
    assert net.generate(vectors, max_tokens=6) == [[7] * 6] * 2
