"""train a tiny ByteLM through `lcompress train` (task: bytes), then compress/decompress with
its checkpoint through the CLI."""

import json
import os

import pytest
import torch

from lightning_compress.cli import main

from helpers import REPO, SHARED_DATA as DATA, assert_cli_refuses, mutated, needs_shared_data

pytestmark = needs_shared_data
EXPERIMENT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "experiments", "bytes", "bytes.yaml")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("bytes")
    code = main([
        "train", EXPERIMENT, "model.size=tiny", "model.kv_heads=1", "data.chunk_bytes=128", "data.batch_size=4",
        "data.val_chunks=2", f"data.audio={DATA}/audio/fsdd/0_*.wav", "trainer.max_steps=4", "trainer.val_check_interval=4",
        "trainer.enable_progress_bar=false", f"output_dir={out}", "name=tiny", "codecs.batch=8",
    ])
    assert code == 0
    return out / "tiny" / "version_0" / "checkpoints" / "best.ckpt"


def test_training_logs_bits_per_byte_per_modality_and_keeps_its_config(checkpoint):
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    hparams = saved["hyper_parameters"]
    assert hparams["size"] == "tiny" and hparams["context"] == 128
    assert hparams["config"]["data"]["chunk_bytes"] == 128 and hparams["config"]["task"] == "bytes"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(checkpoint.parent.parent)).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"val/bits_per_byte", "val/bits_per_byte/text", "val/bits_per_byte/images", "val/bits_per_byte/audio"} <= tags


def test_cli_round_trip_and_refusal(checkpoint, tmp_path, capsys):
    source = tmp_path / "kodim.png"
    source.write_bytes(open(os.path.join(DATA, "images", "kodak", "kodim05.png"), "rb").read()[:3000])
    packed, restored = tmp_path / "k.lcbz", tmp_path / "k.png"
    assert main(["compress", str(source), str(packed), "--model", str(checkpoint), "--batch", "8"]) == 0
    assert main(["decompress", str(packed), str(restored), "--model", str(checkpoint)]) == 0
    assert restored.read_bytes() == source.read_bytes()
    damaged = tmp_path / "d.lcbz"
    data = bytearray(packed.read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["decompress", str(damaged), str(tmp_path / "d.png"), "--model", str(checkpoint)]) == 2
    assert "damaged" in capsys.readouterr().err and not (tmp_path / "d.png").exists()
    assert main(["compress", str(tmp_path / "missing.bin"), str(tmp_path / "x"), "--model", str(checkpoint)]) == 2
    # Without --batch the model's own codecs.batch (8 here) is the batch the file records.
    assert main(["compress", str(source), str(packed), "--model", str(checkpoint), "--chunk-bytes", "64"]) == 0
    assert packed.read_bytes()[25:27] == (8).to_bytes(2, "little")


def test_bench_codecs_table(checkpoint, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench-codecs", "--model", str(checkpoint), "codecs.max_bytes=2048", "codecs.batch=16",
                 "codecs.lm=tiny-random", "codecs.lm_window=64", "codecs.lm_dtype=bfloat16", "data.images=null", "--out", str(out)]) == 0
    rows = json.loads((out / "bench_codecs.json").read_text())
    codecs = {(r["modality"], r["codec"]) for r in rows}
    assert {("text", "gzip -9"), ("text", "zstd -19"), ("text", "LZMA2 (xz -9e)"), ("audio", "FLAC -8"),
            ("text", "ByteLM tiny"), ("audio", "ByteLM tiny")} <= codecs
    model = next(r for r in rows if r["codec"] == "ByteLM tiny" and r["modality"] == "text")
    assert model["raw_bytes"] == 2048 and model["bound_bytes"] > 0 and model["ratio_with_params"] > model["chunked_ratio"]
    lm = next(r for r in rows if r["codec"].startswith("LM tiny-random bfloat16"))  # round trip checked inside
    assert lm["modality"] == "text" and lm["raw_bytes"] == 2048 and lm["unchunked"] >= 0.99 * lm["bound_bytes"] > 0
    assert (out / "bench_codecs.png").read_bytes()[:4] == b"\x89PNG" and "| text | gzip -9 |" in (out / "bench_codecs.md").read_text()


def test_eval_prints_heldout_bits_per_byte_per_modality(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", str(checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {r["modality"]: r["bits_per_byte"] for r in metrics["rows"]}
    assert set(rows) == {"mean", "text", "images", "audio"} and all(0 < v < 16 for v in rows.values())
    assert metrics["checkpoint"] == str(checkpoint.resolve()) and metrics["step"] >= 1
    assert "held-out bits/byte: mean" in printed and "| audio |" in printed


def test_eval_reads_a_byte_checkpoint_of_the_previous_release(tmp_path, capsys):
    # Written before the checkpoint stamp existed (tests/fixtures/README.md).
    legacy = REPO / "tests" / "fixtures" / "legacy_bytes_v0.ckpt"
    out = tmp_path / "eval"
    assert main(["eval", str(legacy), f"data.text={DATA}/text/enwik8_prefix_3MB.xml", f"data.audio={DATA}/audio/fsdd/0_*.wav",
                 "--out", str(out)]) == 0
    rows = {r["modality"] for r in json.loads((out / "metrics.json").read_text())["rows"]}
    assert rows == {"mean", "text", "audio"}


def test_200_mutated_byte_archives_are_refused_through_the_cli(checkpoint, tmp_path, capsys):
    from lightning_compress.tasks.bytes.api import compress_bytes, load_byte_model

    blob, _ = compress_bytes(load_byte_model(checkpoint), open(os.path.join(REPO, "README.md"), "rb").read()[:700],
                             chunk_bytes=128, batch=4)
    assert_cli_refuses(lambda path, out: ["decompress", path, out, "--model", str(checkpoint)],
                       mutated(blob, 200, seed=2), tmp_path, capsys)


@pytest.mark.parametrize("modality, name, match", [
    ("images", "broken.png", "broken.png: cannot be decoded as an image"),
    ("audio", "broken.wav", "broken.wav: cannot be decoded as audio"),
])
def test_an_undecodable_image_or_audio_file_is_one_line_naming_it(tmp_path, capsys, modality, name, match):
    folder = tmp_path / modality
    folder.mkdir()
    (folder / name).write_bytes(b"RIFF\x00\x00 this is not media " * 20)
    others = {"images": "null", "audio": "null", modality: str(folder)}
    code = main(["train", EXPERIMENT, "model.size=tiny", "data.chunk_bytes=128", "data.batch_size=2", "data.val_chunks=1",
                 f"data.images={others['images']}", f"data.audio={others['audio']}", "data.heldout_per_mille=0",
                 "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.enable_progress_bar=false",
                 f"output_dir={tmp_path / 'runs'}"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and match in error[-1], error[-3:]


def test_200_mutated_checkpoints_are_refused_through_eval_or_score_as_the_original(checkpoint, tmp_path, capsys):
    # Flips, truncations, insertions anywhere in a real checkpoint: the zip's CRCs, the
    # stamp's weight sha256 and the safe unpickler must each end in one line and exit 2. A
    # change to a field no reader uses (e.g. the CRC copy in a zip local header) may pass:
    # then the scores must be exactly the original's, so nothing wrong ever comes out.
    def scores(folder):
        return json.loads((folder / "metrics.json").read_text())["rows"]

    assert main(["eval", str(checkpoint), "--out", str(tmp_path / "original")]) == 0
    expected = scores(tmp_path / "original")
    capsys.readouterr()
    source, accepted = tmp_path / "fuzzed.ckpt", 0
    for index, blob in enumerate(mutated(checkpoint.read_bytes(), 200, seed=3)):
        source.write_bytes(blob)
        out = tmp_path / f"out{index}"
        code = main(["eval", str(source), "--out", str(out)])
        error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lcompress:")]
        if code == 0:
            accepted += 1
            assert not error and scores(out) == expected, index
        else:
            assert code == 2 and len(error) == 1 and "internal error" not in error[0], (index, code, error)
            assert not out.exists(), f"mutation {index} wrote results"
    # 30 of these 200 land in bytes no reader uses (zip local-header copies, alignment padding).
    assert accepted < 50
