"""MultimodalBytesDataModule on the real sample sets: layouts, chunk sizes, splits, shards."""

import json
import os

import numpy as np
import pytest
import soundfile
from PIL import Image

from data_modules.multimodal_bytes import MultimodalBytesDataModule, MixedByteStream, audio_bytes, image_bytes, text_bytes

from helpers import SHARED_DATA as DATA, needs_shared_data

pytestmark = needs_shared_data
KODAK = os.path.join(DATA, "images", "kodak")
FSDD = os.path.join(DATA, "audio", "fsdd")
SONIC = os.path.join(DATA, "audio", "sonic_pi")
ENWIK = os.path.join(DATA, "text", "enwik8_prefix_3MB.xml")


def test_image_patches_follow_the_documented_layout():
    path = os.path.join(KODAK, "kodim01.png")
    rgb = np.asarray(Image.open(path).convert("RGB"))
    data = np.frombuffer(image_bytes(path, "rgb", (32, 64)), dtype=np.uint8)
    rows, cols = rgb.shape[0] // 32, rgb.shape[1] // 64
    assert data.size == rows * cols * 32 * 64 * 3
    # Patch (r, c) = rows 32r.., columns 64c.., row-major, channels interleaved.
    second = data[32 * 64 * 3 : 2 * 32 * 64 * 3].reshape(32, 64, 3)
    assert np.array_equal(second, rgb[0:32, 64:128])
    last = data[-32 * 64 * 3 :].reshape(32, 64, 3)
    assert np.array_equal(last, rgb[32 * (rows - 1) : 32 * rows, 64 * (cols - 1) : 64 * cols])
    gray = np.frombuffer(image_bytes(path, "gray", (32, 64)), dtype=np.uint8)
    assert gray.size == data.size // 3


def test_audio_is_interleaved_pcm_16_or_8_bit():
    path = os.path.join(SONIC, "ambi_choir.flac")
    samples, _ = soundfile.read(path, dtype="int16", always_2d=True)
    assert samples.shape[1] == 2
    pcm16 = np.frombuffer(audio_bytes(path, 16), dtype="<i2")
    assert np.array_equal(pcm16, samples.reshape(-1))  # L R L R ...
    pcm8 = np.frombuffer(audio_bytes(path, 8), dtype=np.uint8)
    assert np.array_equal(pcm8, ((samples.reshape(-1).astype(np.int32) >> 8) + 128).astype(np.uint8))


def test_jsonl_text_field_and_bad_line_named(tmp_path):
    good = tmp_path / "a.jsonl"
    good.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"text": "two"}) + "\n")
    assert text_bytes(good) == b"one\ntwo"
    bad = tmp_path / "b.jsonl"
    bad.write_text(json.dumps({"text": "one"}) + "\n{broken\n")
    with pytest.raises(ValueError, match=r"b.jsonl:2: expected a JSON object"):
        text_bytes(bad)


def test_chunks_have_the_configured_size_per_modality_and_heldout_is_separate():
    dm = MultimodalBytesDataModule(text=ENWIK, images=KODAK, audio=[FSDD, SONIC], chunk_bytes=1024, batch_size=6)
    assert set(dm.files) == {"text", "images", "audio"}
    for modality in dm.files:
        train, heldout = dm.chunks(modality, "train"), dm.chunks(modality, "heldout")
        assert heldout.files, f"{modality}: nothing held out"
        first = next(iter(heldout))
        assert len(first) == 1024
        if len(dm.files[modality]) > 1:
            assert not set(train.files) & set(heldout.files), f"{modality}: a file in both splits"
    # enwik8 is a single file: its last 10% of chunks are held out, the rest trains.
    text_train = sum(1 for _ in dm.chunks("text", "train"))
    text_heldout = sum(1 for _ in dm.chunks("text", "heldout"))
    assert text_train + text_heldout == 3_000_000 // 1024 and text_heldout == (3_000_000 // 1024) // 10
    batch = next(iter(dm.train_dataloader()))
    assert batch["bytes"].shape == (6, 1024) and set(batch["modality"]) <= {"text", "images", "audio"}


def test_mixture_follows_the_weights_and_shards_are_disjoint():
    dm = MultimodalBytesDataModule(text=ENWIK, images=KODAK, chunk_bytes=2048, weights={"text": 3, "images": 1})
    sources = {m: dm.chunks(m, "train") for m in dm.files}
    stream = iter(MixedByteStream(sources, dm.weights, seed=0))
    drawn = [next(stream)["modality"] for _ in range(400)]
    assert 0.68 < drawn.count("text") / 400 < 0.82
    shards = []
    for rank in (0, 1):
        only_text = MixedByteStream({"text": sources["text"]}, {"text": 1}, seed=0, rank=rank, world_size=2)
        it = iter(only_text)
        shards.append({bytes(next(it)["bytes"].numpy()) for _ in range(30)})
    assert not shards[0] & shards[1]


def test_bad_data_settings_are_refused():
    with pytest.raises(ValueError, match="set at least one"):
        MultimodalBytesDataModule()
    with pytest.raises(FileNotFoundError, match="data.images"):
        MultimodalBytesDataModule(images="/no/such/dir")
    with pytest.raises(ValueError, match="data.weights names"):
        MultimodalBytesDataModule(text=ENWIK, weights={"video": 1})


def test_bench_cuts_heldout_data_without_changing_its_layout():
    from lightning_compress.tasks.bytes.bench import heldout_items

    dm = MultimodalBytesDataModule(images=KODAK, audio=FSDD, chunk_bytes=2048)
    (image,) = heldout_items(dm, "images", 60_000)
    # Whole 32-row bands of 32 x 64 patches: 2 bands of a 768-wide image or 3 of a 512-wide one.
    assert len(image["raw"]) == 49152 == image["pixels"].size
    assert image["raw"] == image_bytes(image["path"], "gray", (32, 64))[: len(image["raw"])]
    audio = heldout_items(dm, "audio", 20_000)
    assert sum(len(i["raw"]) for i in audio) == 20_000
    assert audio[0]["raw"] == audio_bytes(audio[0]["path"])
