"""Arithmetic coding with a byte model: exact round trips, honest sizes, refusals."""

import os
import struct

import numpy as np
import pytest
import torch

from data_modules.multimodal_bytes import audio_bytes, image_bytes
from lightning_compress.tasks.bytes.api import compress_bytes, compress_file, decompress_bytes, decompress_file
from lightning_compress.tasks.bytes.container import ContainerError
from lightning_compress.tasks.bytes.model import ByteLM

from helpers import SHARED_DATA as DATA, SHARED_DATA_MISSING

README = os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md")


def _model(seed=0, context=256):
    torch.manual_seed(seed)
    return ByteLM("tiny", context).eval()


@pytest.fixture(scope="module")
def model():
    return _model()


def _need_data():
    if not os.path.isdir(DATA):
        pytest.skip(SHARED_DATA_MISSING)


def _kodak_crop() -> bytes:
    _need_data()
    return image_bytes(os.path.join(DATA, "images", "kodak", "kodim03.png"), "gray", (16, 16))[:1500]


def _audio_clip() -> bytes:
    _need_data()
    return audio_bytes(os.path.join(DATA, "audio", "fsdd", "3_jackson_0.wav"))[:1500]


CASES = {
    "empty": lambda: b"",
    "one byte": lambda: b"\x7f",
    "all zero": lambda: bytes(1000),
    "random": lambda: np.random.default_rng(0).integers(0, 256, 700, dtype=np.uint8).tobytes(),
    "text": lambda: open(README, "rb").read()[:900],
    "image pixels": _kodak_crop,
    "audio pcm": _audio_clip,
}


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_is_byte_identical(model, name):
    data = CASES[name]()
    blob, stats = compress_bytes(model, data, chunk_bytes=256, batch=4)
    assert decompress_bytes(model, blob) == data
    assert stats["raw_bytes"] == len(data) and stats["compressed_bytes"] == len(blob)


def test_quantised_frequencies_are_the_byte_formats_integers():
    # The frequencies every byte file was coded with (formats 1-3, written with numpy on the
    # host): floor(p * (2**20 - 256)) + 1, the remainder on the first likeliest byte. The torch
    # version, which runs where the model does, must give the same integers bit for bit, or
    # files written before it would not decode.
    from lightning_compress.tasks.bytes.coder import TOTAL, quantise

    def as_written(p):
        freq = np.floor(p * (TOTAL - 256)).astype(np.int64) + 1
        freq[np.arange(len(p)), p.argmax(axis=1)] += TOTAL - freq.sum(axis=1)
        return freq

    generator = torch.Generator().manual_seed(0)
    sharpness = torch.logspace(-2, 2, 64, dtype=torch.float64).unsqueeze(1)  # flat to nearly one-hot
    rows = [torch.softmax(torch.randn(64, 256, generator=generator, dtype=torch.float64) * sharpness, dim=-1),
            torch.full((1, 256), 1 / 256, dtype=torch.float64),  # uniform: 4096 each, nothing left over
            torch.nn.functional.one_hot(torch.tensor([200]), 256).double()]
    tie = torch.full((1, 256), 0.1 / 254, dtype=torch.float64)
    tie[0, 17] = tie[0, 90] = 0.45  # two equal maxima: the first gets the remainder
    probabilities = torch.cat(rows + [tie])
    freq = quantise(probabilities)
    assert freq.dtype == torch.float64
    np.testing.assert_array_equal(freq.numpy().astype(np.int64), as_written(probabilities.numpy()))
    assert (freq >= 1).all() and (freq.sum(dim=1) == TOTAL).all()
    assert freq[-1, 17] > freq[-1, 90] and (freq[-3] == TOTAL // 256).all()


def test_grouped_query_attention_shrinks_the_cache_and_round_trips(model):
    # tiny has 2 heads; kv_heads=1 halves the keys and values a coded byte reads.
    torch.manual_seed(0)
    grouped = ByteLM("tiny", 256, kv_heads=1).eval()
    assert grouped.net.config.num_key_value_heads == 1 and model.net.config.num_key_value_heads == 2
    assert grouped.parameter_count() < model.parameter_count()
    data = open(README, "rb").read()[:1200]
    blob, _ = compress_bytes(grouped, data, chunk_bytes=256, batch=4)
    assert decompress_bytes(grouped, blob) == data
    with pytest.raises(ContainerError):  # another model's file is refused as before
        decompress_bytes(model, blob)
    with pytest.raises(ValueError, match="kv_heads=3; expected 0 or a divisor of the 2 heads"):
        ByteLM("tiny", 256, kv_heads=3)


def test_multi_chunk_file_with_a_short_last_chunk_and_several_batches(model, tmp_path):
    data = open(README, "rb").read()[:256 * 9 + 37]  # 10 chunks, batches of 4, 4, 2
    source, packed, restored = tmp_path / "in.txt", tmp_path / "in.lcbz", tmp_path / "out.txt"
    source.write_bytes(data)
    compress_file(source, packed, model, batch=4, chunk_bytes=256, progress=False)
    decompress_file(packed, restored, model, progress=False)
    assert restored.read_bytes() == data


@pytest.mark.slow
def test_coded_size_is_within_one_percent_of_the_cross_entropy_bound():
    # A model that has learnt something, so the bound is well below 8 bits/byte.
    model = _model(context=2048)
    data = (open(README, "rb").read() * 20)[: 64 * 1024]
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    chunk = torch.frombuffer(bytearray(data[:8 * 512]), dtype=torch.uint8).view(8, 512)
    for _ in range(60):
        loss = model.bits_per_byte(chunk)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    blob, stats = compress_bytes(model, data, batch=32)
    assert stats["bound_bytes"] < 0.75 * len(data), "the model should have learnt to predict text"
    # The whole file (78-byte header included) within 1% of the bound; the coder alone far closer.
    assert stats["compressed_bytes"] <= 1.01 * stats["bound_bytes"], stats
    assert stats["payload_bytes"] <= 1.001 * stats["bound_bytes"] + 8, stats
    assert decompress_bytes(model, blob) == data


def _refused(tmp_path, packed: bytes, model, match: str):
    damaged, restored = tmp_path / "damaged.lcbz", tmp_path / "restored.bin"
    damaged.write_bytes(packed)
    with pytest.raises(ContainerError, match=match):
        decompress_file(damaged, restored, model, progress=False)
    assert not restored.exists() and not list(tmp_path.glob(".restored*")), "an output file was left behind"


def test_damaged_truncated_or_foreign_files_are_refused_without_output(model, tmp_path):
    data = open(README, "rb").read()[:600]
    blob, _ = compress_bytes(model, data, chunk_bytes=256, batch=4)
    flipped = bytearray(blob)
    flipped[-3] ^= 0x10
    _refused(tmp_path, bytes(flipped), model, "damaged")
    header_flip = bytearray(blob)
    header_flip[20] ^= 0x01  # inside the original length
    _refused(tmp_path, bytes(header_flip), model, "header is damaged")
    _refused(tmp_path, blob[:-5], model, "truncated")
    _refused(tmp_path, blob[:7], model, "too short")
    _refused(tmp_path, blob[:40], model, "too short")
    _refused(tmp_path, b"PK\x03\x04" + blob[4:], model, "not a lightning_compress")
    _refused(tmp_path, blob, _model(seed=1), "compressed with byte model")


def test_chunk_longer_than_the_context_or_a_batch_the_header_cannot_hold_is_refused_first(model):
    for chunk in (0, 257):
        with pytest.raises(ValueError, match=f"chunk_bytes={chunk}: must be between 1 and the model's context"):
            compress_bytes(model, b"abc", chunk_bytes=chunk)
    for batch in (0, 65536):
        with pytest.raises(ValueError, match=f"batch={batch}: must be between 1 and 65535"):
            compress_bytes(model, bytes(10**6), batch=batch)  # refused before any coding


def _crafted(blob: bytes, **fields) -> bytes:
    """`blob` with header fields replaced and every CRC recomputed: a file crafted to hurt,
    which the CRCs alone cannot catch."""
    import struct
    import zlib

    from lightning_compress.tasks.bytes import container

    names = ["magic", "version", "model", "length", "chunk_bytes", "batch", "threads", "device", "sha256", "words", "crc"]
    values = dict(zip(names, container._BODY.unpack(blob[: container._BODY.size])))
    (values["probe"],) = struct.unpack_from("<I", blob, container._BODY.size + 4)
    values.update(fields)
    body = container._BODY.pack(*(values[n] for n in names))
    probe = struct.pack("<I", values["probe"])
    covered = body + probe if values["version"] >= container.PROBED_VERSION else body
    return body + struct.pack("<I", zlib.crc32(covered)) + probe + blob[container.HEADER_SIZE :]


@pytest.mark.parametrize("fields, match", [
    ({"chunk_bytes": 0}, "chunk_bytes=0 is invalid"),
    ({"batch": 0}, "batch=0 is invalid"),
    ({"threads": 0}, "threads=0 is invalid"),
    ({"device": 7}, "device=7 is invalid"),
    ({"chunk_bytes": 100000}, "exceeds the model's context"),
    ({"length": 10**12}, "more than its .*payload can hold"),
    ({"batch": 1}, "arithmetic probe does not match"),  # another batch is another computation
    ({"length": 5000}, "arithmetic probe does not match|does not decode|fails its sha256"),
])
def test_crafted_headers_end_in_one_clear_error_and_no_output(model, tmp_path, fields, match):
    blob, _ = compress_bytes(model, open(README, "rb").read()[:600], chunk_bytes=256, batch=4)
    _refused(tmp_path, _crafted(blob, **fields), model, match)


FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")


def test_files_of_format_1_still_decode_with_the_stepper_they_were_coded_with(model):
    # Format 1 (the release before the lean step) was coded with the transformers forward on a
    # static cache; formats 2 and 3 code with the lean step, whose logits differ in the last bits, so
    # the decoder must pick the stepper by the file's version. A coded file decodes only where
    # the arithmetic repeats exactly (same torch build and CPU kernels: the fixture written on a
    # machine without AVX-512 fails its sha256 check on one with it), so the format-1 file of
    # this test is written here, with the format-1 stepper, as the old release wrote it.
    import hashlib

    from lightning_compress.tasks.bytes.api import byte_stepper, encode_chunks
    from lightning_compress.tasks.bytes.coder import LeanStepper, TransformersStepper
    from lightning_compress.tasks.bytes.container import model_hash, pack

    original = open(os.path.join(FIXTURES, "bytes_v1_tiny_seed0.raw"), "rb").read()
    assert isinstance(byte_stepper(model, 1)(2, 256), TransformersStepper)
    assert isinstance(byte_stepper(model, 2)(2, 256), LeanStepper)
    chunks = [original[i : i + 256] for i in range(0, len(original), 256)]
    words, _ = encode_chunks(model, chunks, 2, progress=False, version=1)
    header = {"model": model_hash(model), "length": len(original), "chunk_bytes": 256, "batch": 2,
              "threads": torch.get_num_threads(), "device": "cpu", "sha256": hashlib.sha256(original).hexdigest(),
              "probe": 0}  # format 1 had no probe (a reserved 0)
    blob = _crafted(pack(header, words), version=1)
    assert blob[4] == 1 and decompress_bytes(model, blob) == original
    assert compress_bytes(model, original, chunk_bytes=256, batch=2)[0][4] == 3
    # The file the old release wrote: exact where this machine's kernels match the writer's,
    # otherwise refused in one line (never wrong bytes).
    foreign = open(os.path.join(FIXTURES, "bytes_v1_tiny_seed0.lcbz"), "rb").read()
    try:
        assert decompress_bytes(model, foreign) == original
    except ContainerError as error:
        assert "fails its sha256 check" in str(error) or "does not decode" in str(error)


def test_a_newer_format_is_refused_naming_the_versions(model, tmp_path):
    blob, _ = compress_bytes(model, b"hello", chunk_bytes=256, batch=4)
    _refused(tmp_path, _crafted(blob, version=4), model, "format version 4; this lightning_compress reads versions 1, 2, 3")


def test_a_machine_that_computes_the_model_differently_is_refused_before_decoding(model, tmp_path, monkeypatch):
    # The probe a file records is what the encoding machine computed for the model's first
    # steps; another torch build or CPU kernel set gives another one. A file whose probe differs
    # from this machine's is refused before the coder runs (the sha256 would only catch it
    # after a full decode); a format-2 file (no probe) still decodes.
    from lightning_compress.tasks.bytes import api
    from lightning_compress.tasks.bytes.api import chunk_probe

    real_decode = api.decode_chunks
    data = open(README, "rb").read()[:3000]
    blob, _ = compress_bytes(model, data, chunk_bytes=256, batch=4)
    probe = struct.unpack_from("<I", blob, 74)[0]
    lengths = [256] * 11 + [len(data) - 2816]
    assert probe == chunk_probe(model, lengths, 4) != 0
    assert chunk_probe(model, lengths, 3) != probe  # another batch shape is another computation
    decoded = []
    monkeypatch.setattr(api, "decode_chunks", lambda *args, **kw: decoded.append(1) or real_decode(*args, **kw))
    _refused(tmp_path, _crafted(blob, probe=probe ^ 1), model, r"arithmetic probe does not match this machine's .*CPU kernels")
    assert not decoded  # refused up front
    assert decompress_bytes(model, _crafted(blob, version=2, probe=0)) == data
    assert compress_bytes(model, b"")[0][74:78] == bytes(4)  # nothing to probe
