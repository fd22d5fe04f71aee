"""Token-level compression with a pretrained LM: exact for any bytes, near its bound, refusals."""

import os
import struct
import zlib

import numpy as np
import pytest
from transformers import PreTrainedTokenizerFast

from lightning_compress.backbone import Backbone, fingerprint, load_backbone, load_tokenizer, tiny_random_decoder
from lightning_compress.tasks.bytes import lm_container
from lightning_compress.tasks.bytes.container import ContainerError
from lightning_compress.tasks.bytes.lm_api import LmCompressor
from lightning_compress.tasks.bytes.tokens import ByteExactTokenizer

from helpers import SHARED_DATA, SHARED_DATA_MISSING, assert_cli_refuses, mutated

README = os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md")


@pytest.fixture(scope="module")
def lm():
    return LmCompressor(load_backbone("tiny-random"))


@pytest.fixture(scope="module")
def tokens():
    return ByteExactTokenizer(load_tokenizer("embedded"))


def _readme(size: int) -> bytes:
    return (open(README, "rb").read() * 8)[:size]


ADVERSARIAL = {
    "empty": b"",
    "one byte": b"a",
    "text": _readme(3000),
    "invalid utf-8": b"caf\xe9 \xff\xfe\x80 ok \xed\xa0\x80 \xc0\xc1",
    "NUL bytes": b"\x00" * 40 + b"a\x00b",
    "special-token text": "<|endoftext|><|im_start|>user\n<|im_end|> <s></s> [INST]".encode(),
    "CRLF": b"line one\r\nline two\r\n\r\n",
    "runs of spaces": b"x" + b" " * 300 + b"y\t\t\t\n" + b" " * 17,
    "mixed scripts and emoji": "Ελληνικά, русский, 日本語, عربى, हिन्दी 😀👍🏽🏳️‍🌈 e\u0301 \ufb01".encode(),
    "every byte value": bytes(range(256)) * 2,
    "binary": np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes(),
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_the_byte_exact_spelling_round_trips_any_input(tokens, name):
    data = ADVERSARIAL[name]
    ids, escaped = tokens.encode(data)
    assert tokens.decode(ids, escaped) == data
    # Only bytes without a single-byte token are escaped, each once.
    assert len(escaped) == int(np.isin(ids, [tokens.escape_id]).sum())


def test_text_is_spelt_with_the_tokenizers_own_tokens(tokens):
    text = _readme(4000)
    ids, escaped = tokens.encode(text)
    reference = load_tokenizer("embedded")(text.decode(), add_special_tokens=False)["input_ids"]
    assert ids.tolist() == reference and escaped == b"" and tokens.fallback_bytes == 0


def test_special_token_text_is_coded_as_text_not_as_control_tokens(tokens):
    ids, _ = tokens.encode(b"<|endoftext|>")
    assert len(ids) > 1 and tokens.escape_id not in ids.tolist()


def test_a_tokenizer_that_is_not_byte_level_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(ValueError, match="not a byte-level BPE tokenizer"):
        ByteExactTokenizer(PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]"))


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_lm_round_trip_is_byte_identical(lm, name):
    data = ADVERSARIAL[name]
    blob, stats = lm.compress(data, window=64, batch=4)
    assert lm.decompress(blob) == data
    assert stats["compressed_bytes"] == len(blob) and stats["raw_bytes"] == len(data)


def test_multi_window_file_over_several_batches_through_files(lm, tmp_path):
    data = _readme(6000)  # ~1,500 tokens: 24 windows of 64, batches of 5
    source, packed, restored = tmp_path / "in.txt", tmp_path / "in.lclm", tmp_path / "out.txt"
    source.write_bytes(data)
    stats = lm.compress_file(source, packed, window=64, batch=5, progress=False)
    assert stats["tokens"] > 20 * 64
    lm.decompress_file(packed, restored, progress=False)
    assert restored.read_bytes() == data


def test_coded_size_is_within_one_percent_of_the_cross_entropy_bound(lm):
    blob, stats = lm.compress(_readme(16 * 1024), window=256, batch=16)
    # The whole file, header included, within 1% of the LM's bound; the coder alone far closer.
    assert stats["compressed_bytes"] <= 1.01 * stats["bound_bytes"], stats
    assert stats["payload_bytes"] <= 1.002 * stats["bound_bytes"] + 8, stats
    header = len(blob) - stats["payload_bytes"]
    assert header <= 60, f"{header}-byte header"


def _refused(tmp_path, blob: bytes, lm, match: str):
    damaged, restored = tmp_path / "damaged.lclm", tmp_path / "restored.bin"
    damaged.write_bytes(blob)
    with pytest.raises(ContainerError, match=match):
        lm.decompress_file(damaged, restored, progress=False)
    assert not restored.exists() and not list(tmp_path.glob(".restored*")), "an output file was left behind"


def _crafted(blob: bytes, **fields) -> bytes:
    """`blob` re-packed with some header fields replaced, its CRC made valid again."""
    header, escaped, words = lm_container.unpack(blob)
    header = {**header, **{k: v for k, v in fields.items() if k not in ("stepper", "device")}}
    packed = bytearray(lm_container.pack(header, escaped, words))
    if "stepper" in fields or "device" in fields:  # values pack() would not write: set the flag bits by hand
        packed[5] = (packed[5] & ~3 & ~0x30) | fields.get("stepper", packed[5] & 3) | fields.get("device", 0) << 4
        end = len(packed) - 4 * len(words) - 4
        struct.pack_into("<I", packed, end, zlib.crc32(bytes(packed[end + 4 :]), zlib.crc32(bytes(packed[:end]))))
    return bytes(packed)


def test_damaged_truncated_or_foreign_files_are_refused_without_output(lm, tmp_path):
    blob, _ = lm.compress(_readme(800), window=64, batch=4)
    flipped = bytearray(blob)
    flipped[-3] ^= 0x10
    _refused(tmp_path, bytes(flipped), lm, "damaged")
    _refused(tmp_path, blob[:-5], lm, "damaged or truncated")
    _refused(tmp_path, blob[:10], lm, "too short")
    _refused(tmp_path, blob[:30], lm, "too short|ends early")
    _refused(tmp_path, b"LCBZ" + blob[4:], lm, "not a lightning_compress token-coder file")
    tokenizer = load_tokenizer("embedded")
    other = tiny_random_decoder(len(tokenizer), seed=1)
    stranger = LmCompressor(Backbone(other, tokenizer, "tiny-random-seed-1", fingerprint(other)))
    _refused(tmp_path, blob, stranger, "compressed with LM 'tiny-random'")


@pytest.mark.parametrize("fields, match", [
    ({"window": 0}, "window=0 is invalid"),
    ({"threads": 0}, "threads=0 is invalid"),
    ({"batch": 0}, "batch=0 is invalid"),
    ({"stepper": 3}, "stepper=3 is invalid"),
    ({"device": 3}, "device=3 is invalid"),
    ({"tokens": 10**9}, "tokens=1000000000 is invalid"),
    ({"length": 10**12, "tokens": 10**12}, "more than its .*payload can hold"),
    ({"window": 100000}, "exceeds the model's context"),
    ({"start_token": 10**6}, "start_token=1000000 is not an id"),
    ({"batch": 1}, "arithmetic probe does not match"),  # another batch is another computation
    ({"tokens": 150}, "arithmetic probe does not match|does not decode|fails its sha256"),
])
def test_crafted_headers_end_in_one_clear_error_and_no_output(lm, tmp_path, fields, match):
    blob, _ = lm.compress(_readme(800), window=64, batch=4)
    _refused(tmp_path, _crafted(blob, **fields), lm, match)


def test_a_machine_that_computes_the_lm_differently_is_refused_before_decoding(lm, tmp_path, monkeypatch):
    # As for byte files (test_byte_coder): the file's arithmetic probe against this machine's,
    # before the coder runs. A format-1 file (no probe) still decodes.
    from lightning_compress.tasks.bytes import lm_api

    data = _readme(800)
    blob, _ = lm.compress(data, window=64, batch=4)
    probe = lm_container.unpack(blob)[0]["probe"]
    assert probe != 0 and lm.compress(data, window=64, batch=4)[0] == blob
    real_decode, decoded = lm_api.decode_sequences, []
    monkeypatch.setattr(lm_api, "decode_sequences", lambda *args, **kw: decoded.append(1) or real_decode(*args, **kw))
    _refused(tmp_path, _crafted(blob, probe=probe ^ 1), lm, r"arithmetic probe does not match this machine's")
    assert not decoded  # refused up front
    header, escaped, words = lm_container.unpack(blob)
    monkeypatch.setattr(lm_container, "VERSION", 1)
    monkeypatch.setattr(lm_container, "FIELDS", lm_container.FIELDS_V1)
    old = lm_container.pack(header, escaped, words)  # as the release before the probe wrote it
    monkeypatch.undo()
    assert old[4] == 1 and len(old) < len(blob) and lm.decompress(old) == data


@pytest.mark.slow
def test_the_embedded_lm_codes_held_out_wikipedia_near_its_bound():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(SHARED_DATA_MISSING)
    data = open(os.path.join(SHARED_DATA, "text", "enwik8_prefix_3MB.xml"), "rb").read()[-4096:]
    lm = LmCompressor.load("embedded")
    blob, stats = lm.compress(data, window=256, batch=8)  # 5 windows side by side: ~1 min both ways
    assert lm.decompress(blob) == data
    assert stats["payload_bytes"] <= 1.005 * stats["bound_bytes"] + 8, stats
    # A real pretrained LM: far below what xz needs on the same 4 KB (~3.5 bits/byte).
    assert 8 * stats["compressed_bytes"] / len(data) < 2.2, stats


def test_cli_compress_with_an_lm_and_decompress_from_the_model_the_file_names(tmp_path, capsys):
    from lightning_compress.cli import main

    source, packed, restored = tmp_path / "in.bin", tmp_path / "in.lclm", tmp_path / "out.bin"
    source.write_bytes(ADVERSARIAL["invalid utf-8"] + _readme(500))
    assert main(["compress", str(source), str(packed), "--lm", "tiny-random", "--window", "64"]) == 0
    assert "tokens" in capsys.readouterr().out
    assert main(["decompress", str(packed), str(restored)]) == 0  # no --lm: the file says "tiny-random"
    assert restored.read_bytes() == source.read_bytes()
    assert "sha256 verified" in capsys.readouterr().out
    # One clear line, nothing written, for each misuse.
    for argv, match in [
        (["compress", str(source), str(source), "--lm", "tiny-random"], "is the input file itself"),
        (["compress", str(source), str(tmp_path / "x"), "--lm", "tiny-random", "--chunk-bytes", "9"], "--chunk-bytes is for the byte model"),
        (["compress", str(source), str(tmp_path / "x"), "--lm", "tiny-random", "--batch", "0"], "batch=0: must be between 1 and 65535"),
        (["compress", str(source), str(tmp_path / "x"), "--lm", "tiny-random", "--window", "0"], "window=0 tokens: must be between 1"),
        (["decompress", str(packed), str(tmp_path / "y"), "--model", "some.ckpt"], "compressed with a pretrained LM"),
        (["decompress", str(source), str(tmp_path / "z")], "not a lightning_compress file"),
        (["decompress", str(tmp_path), str(tmp_path / "w")], "is a directory"),
    ]:
        assert main(argv) == 2, argv
        error = capsys.readouterr().err
        assert match in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_cli_decompresses_with_the_dtype_the_file_records(tmp_path, capsys):
    from lightning_compress.cli import main
    from lightning_compress.tasks.bytes.config import LM_DTYPES

    assert LM_DTYPES == lm_container.DTYPES
    source, packed, restored = tmp_path / "in.bin", tmp_path / "in.lclm", tmp_path / "out.bin"
    source.write_bytes(_readme(400))
    assert main(["compress", str(source), str(packed), "--lm", "tiny-random", "--window", "64", "--lm-dtype", "bfloat16"]) == 0
    assert main(["decompress", str(packed), str(restored)]) == 0  # no --lm-dtype: the file says bfloat16
    assert restored.read_bytes() == source.read_bytes()
    capsys.readouterr()
    # Asked for another dtype, the coder refuses: the arithmetic would not repeat.
    assert main(["decompress", str(packed), str(tmp_path / "x"), "--lm-dtype", "float32"]) == 2
    error = capsys.readouterr().err
    assert "compressed with the LM in bfloat16" in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "x").exists()


def test_200_mutated_lm_archives_are_refused_through_the_cli(lm, tmp_path, capsys):
    blob, _ = lm.compress(_readme(700) + b"\xff\xc0", window=64, batch=4)
    assert_cli_refuses(lambda path, out: ["decompress", path, out], mutated(blob, 200, seed=1), tmp_path, capsys)
