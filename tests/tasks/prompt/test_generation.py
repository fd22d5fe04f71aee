import torch

from lightning_compress.tasks.prompt.encoders import build_encoder
from lightning_compress.tasks.prompt.generation import greedy_regenerate
from lightning_compress.tasks.prompt.memory import MemoryKV


def _prefix_memory(decoder, prefix):
    encoder = build_encoder("full", decoder, memory_tokens=prefix.shape[1])
    with torch.no_grad():
        return encoder.encode_embeds(decoder.model.embed_tokens(prefix), torch.arange(prefix.shape[1]).unsqueeze(0))


def test_matches_transformers_generate(tiny_backbone):
    """Greedy decoding from a prefix's memory equals HF generate over prefix + BOS."""
    decoder, bos = tiny_backbone.decoder, tiny_backbone.tokenizer.bos_token_id
    torch.manual_seed(0)
    prefix = torch.randint(3, 5000, (3, 5))
    rows = greedy_regenerate(decoder, _prefix_memory(decoder, prefix), bos, eos_token_ids=[10**9], max_new_tokens=6)
    reference = decoder.generate(
        torch.cat([prefix, torch.full((3, 1), bos)], dim=1), max_new_tokens=6, do_sample=False,
        eos_token_id=None, pad_token_id=0, attention_mask=torch.ones(3, 6, dtype=torch.long),
    )[:, 6:]
    assert rows == reference.tolist()


def test_batch_equals_one_at_a_time_and_stops_at_eos(tiny_backbone):
    decoder, bos = tiny_backbone.decoder, tiny_backbone.tokenizer.bos_token_id
    torch.manual_seed(1)
    prefix = torch.randint(3, 5000, (4, 5))
    memory = _prefix_memory(decoder, prefix)
    free = greedy_regenerate(decoder, memory, bos, [10**9], max_new_tokens=8)
    # Make row 1's third token an end-of-sequence token: that row must stop there.
    eos = free[1][2]
    rows = greedy_regenerate(decoder, memory, bos, [eos], max_new_tokens=8)
    singles = [greedy_regenerate(decoder, memory.select(slice(i, i + 1)), bos, [eos], 8)[0] for i in range(4)]
    assert rows == singles
    assert rows[1] == free[1][: free[1].index(eos)]
    for row in rows:
        assert eos not in row


def test_memory_is_not_mutated_by_generation(tiny_backbone):
    decoder = tiny_backbone.decoder
    memory = _prefix_memory(decoder, torch.randint(3, 5000, (1, 4)))
    before = [k.clone() for k in memory.keys]
    greedy_regenerate(decoder, memory, 1, [2], 5)
    assert memory.num_slots == 4 and all(torch.equal(a, b) for a, b in zip(before, memory.keys))


def test_interpolation_endpoints(tiny_backbone):
    a = MemoryKV([torch.randn(1, 2, 3, 8)], [torch.randn(1, 2, 3, 8)])
    b = MemoryKV([torch.randn(1, 2, 3, 8)], [torch.randn(1, 2, 3, 8)])
    for method in ("lerp", "slerp"):
        torch.testing.assert_close(getattr(a, method)(b, 0.0).keys[0], a.keys[0])
        torch.testing.assert_close(getattr(a, method)(b, 1.0).values[0], b.values[0])
    mid = a.slerp(b, 0.5).keys[0]
    expected_norm = (a.keys[0].norm(dim=-1) + b.keys[0].norm(dim=-1)) / 2
    torch.testing.assert_close(mid.norm(dim=-1), expected_norm)


def test_memory_save_and_load_round_trip(tmp_path):
    memory = MemoryKV([torch.randn(2, 2, 3, 8) for _ in range(2)], [torch.randn(2, 2, 3, 8) for _ in range(2)])
    memory.save(tmp_path / "memory.pt")
    loaded = MemoryKV.load(tmp_path / "memory.pt")
    assert all(torch.equal(a, b) for a, b in zip(memory.keys + memory.values, loaded.keys + loaded.values))
    assert loaded.select([1]).batch_size == 1
