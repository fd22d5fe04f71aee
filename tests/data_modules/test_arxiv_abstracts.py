import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from torch.utils.data import DataLoader

from data_modules.arxiv_abstracts import AbstractsStream, ArxivAbstractsDataModule, collate, split_of
from data_modules.records import SkipLog, iter_texts, shipped_sample


@pytest.fixture(scope="module")
def tokenizer():
    from lightning_compress.backbone import load_tokenizer

    return load_tokenizer("tiny-random")


def _texts(stream):
    return [example["text"] for example in stream]


def test_shipped_sample_exists_and_reads():
    skips = SkipLog()
    texts = list(iter_texts("sample", "abstract", skips))
    assert shipped_sample().is_file() and len(texts) == 3000 and skips.total == 0


def test_examples_have_exactly_n_tokens_and_short_ones_are_counted(tokenizer):
    stream = AbstractsStream("sample", "val", tokenizer, n_tokens=200)
    shapes = {tuple(e["input_ids"].shape) for e in stream}
    assert shapes == {(200,)}
    assert stream.skips.counts["shorter than n_tokens=200"] > 0


def test_splits_are_disjoint_and_stable(tokenizer):
    splits = {s: set(_texts(AbstractsStream("sample", s, tokenizer, n_tokens=8))) for s in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"]) and not (splits["val"] & splits["test"])
    assert 50 < len(splits["val"]) < 250 and 50 < len(splits["test"]) < 250
    assert split_of("a fixed text", 50, 50) == split_of("a fixed text", 50, 50)
    # sha1-based, so the same on every machine: pin one value.
    assert [split_of(f"text {i}", 50, 50) for i in range(40)].count("train") == sum(
        int(__import__("hashlib").sha1(f"text {i}".encode()).hexdigest()[:8], 16) % 1000 >= 100 for i in range(40)
    )


@pytest.mark.parametrize("split, limit", [("val", None), ("val", 30)])
def test_two_ranks_two_workers_disjoint_and_covering(tokenizer, split, limit):
    full = _texts(AbstractsStream("sample", split, tokenizer, n_tokens=16, limit=limit))
    seen = []
    for rank in range(2):
        stream = AbstractsStream("sample", split, tokenizer, n_tokens=16, limit=limit, rank=rank, world_size=2)
        loader = DataLoader(stream, batch_size=3, num_workers=2, collate_fn=collate)
        seen.append([text for batch in loader for text in batch["text"]])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(full)
    assert len(seen[0] + seen[1]) == len(full)


def test_bad_records_are_skipped_and_counted(tmp_path, tokenizer):
    good = "A long enough abstract about the compression of prompts into memory slots for decoders."
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                json.dumps({"abstract": good}).encode(),
                b"{not json",
                json.dumps({"title": "no abstract"}).encode(),
                json.dumps({"abstract": "   "}).encode(),
                b'{"abstract": "\xff\xfe bad bytes"}',
                json.dumps({"abstract": good + " Second."}).encode(),
            ]
        )
    )
    skips = SkipLog()
    texts = list(iter_texts(str(path), "abstract", skips))
    assert len(texts) == 2
    assert skips.counts == {"malformed JSON (Expecting property name enclosed in double quotes)": 1,
                            "missing `abstract`": 1, "empty text": 1, "not UTF-8": 1}
    assert f"{path}:2" in skips.summary() and f"{path}:5" in skips.summary()


def test_parquet_csv_gz_and_directory_sources(tmp_path):
    texts = [f"Abstract number {i} about transformers." for i in range(5)]
    pq.write_table(pa.table({"abstract": texts}), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("title,abstract\n" + "".join(f't,"{t}"\n' for t in texts))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps({"abstract": t}) + "\n" for t in texts)
    (tmp_path / "d.json").write_text(json.dumps([{"abstract": t} for t in texts]))
    assert list(iter_texts(str(tmp_path), "abstract", SkipLog())) == texts * 4
    assert list(iter_texts(str(tmp_path / "*.csv"), "abstract", SkipLog())) == texts


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        list(iter_texts(str(tmp_path / "missing.jsonl"), "abstract", SkipLog()))


def test_datamodule_batches(tokenizer):
    dm = ArxivAbstractsDataModule(tokenizer, n_tokens=10, batch_size=4, val_size=6)
    batches = list(dm.val_dataloader())
    assert [b["input_ids"].shape for b in batches] == [(4, 10), (2, 10)]


def test_hub_code_path_streams_with_datasets(tmp_path):
    """The hub reader is `datasets.load_dataset(..., streaming=True)`; offline it is exercised
    on a local dataset folder, which load_dataset treats like a hub repository."""
    from data_modules.records import iter_hub_texts

    texts = [f"Streamed abstract {i} on memory tokens." for i in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"abstract": t}) + "\n" for t in texts))
    skips = SkipLog()
    assert list(iter_hub_texts(str(tmp_path), "train", "abstract", skips)) == texts and skips.total == 0


def test_training_stream_repeats_the_split(tokenizer):
    one_pass = _texts(AbstractsStream("sample", "val", tokenizer, n_tokens=8))
    stream = iter(AbstractsStream("sample", "val", tokenizer, n_tokens=8, repeat=True))
    two_passes = [next(stream)["text"] for _ in range(2 * len(one_pass))]
    assert two_passes == one_pass + one_pass


def test_training_stream_without_usable_text_fails_clearly(tokenizer):
    with pytest.raises(ValueError, match="no text with at least 5000 tokens"):
        next(iter(AbstractsStream("sample", "val", tokenizer, n_tokens=5000, repeat=True)))


def test_pad_to_n_pads_short_texts_with_the_pad_id_instead_of_skipping(tokenizer):
    stream = AbstractsStream("sample", "val", tokenizer, n_tokens=200, pad_to_n=True, pad_id=7)
    examples = list(stream)
    assert {tuple(e["input_ids"].shape) for e in examples} == {(200,)}
    assert stream.skips.total == 0
    assert len(examples) == len(list(AbstractsStream("sample", "val", tokenizer, n_tokens=1)))
    padded = [e for e in examples if len(tokenizer(e["text"], add_special_tokens=False)["input_ids"]) < 200]
    assert padded, "the val split should hold texts shorter than 200 tokens"
    ids = padded[0]["input_ids"].tolist()
    real = tokenizer(padded[0]["text"], add_special_tokens=False)["input_ids"]
    assert ids == real + [7] * (200 - len(real))


def test_training_order_is_a_seeded_shuffle_new_at_every_pass(tokenizer):
    def first(seed, count):
        stream = iter(AbstractsStream("sample", "val", tokenizer, n_tokens=8, repeat=True, shuffle_buffer=64, seed=seed))
        return [next(stream)["text"] for _ in range(count)]

    file_order = _texts(AbstractsStream("sample", "val", tokenizer, n_tokens=8))
    size = len(file_order)
    two_passes = first(0, 2 * size)
    assert two_passes == first(0, 2 * size), "the same seed must give the same order"
    assert two_passes[:size] != file_order and sorted(two_passes[:size]) == sorted(file_order)
    assert two_passes[size:] != two_passes[:size] and sorted(two_passes[size:]) == sorted(file_order)
    assert first(1, size) != two_passes[:size]


def test_test_source_replaces_the_hash_split_with_every_record_of_its_file(tmp_path, tokenizer):
    later = [f"An abstract from a later period, number {i}, about memory tokens and frozen decoders." for i in range(5)]
    path = tmp_path / "later.jsonl"
    path.write_text("".join(json.dumps({"abstract": t}) + "\n" for t in later))
    dm = ArxivAbstractsDataModule(tokenizer, n_tokens=8, eval_size=10, test_source=str(path))
    assert _texts(dm.dataset("test")) == later
    assert _texts(dm.dataset("val"))[:3] == _texts(AbstractsStream("sample", "val", tokenizer, n_tokens=8))[:3]


@pytest.mark.parametrize("files", [4, 3])
def test_hub_data_is_split_by_datasets_across_readers(tmp_path, files, caplog):
    # 4 files over 2 readers: whole files each; 3 files: every reader keeps 1 record in 2.
    from data_modules.records import iter_hub_texts

    texts = [f"Hub abstract {i} about memory tokens." for i in range(12)]
    (tmp_path / "data").mkdir()
    for f in range(files):
        (tmp_path / "data" / f"train-{f}.jsonl").write_text("".join(json.dumps({"abstract": t}) + "\n" for t in texts[f::files]))
    with caplog.at_level("INFO", logger="data_modules.records"):
        shares = [list(iter_hub_texts(str(tmp_path), "train", "abstract", SkipLog(), shard=(i, 2))) for i in range(2)]
    assert not set(shares[0]) & set(shares[1]) and sorted(shares[0] + shares[1]) == sorted(texts)
    assert ("each reads its own files" if files == 4 else "keeps 1 record in 2") in caplog.text


def test_a_huge_record_is_skipped_and_counted_not_parsed(tmp_path):
    import json

    from data_modules.records import MAX_RECORD_BYTES

    path = tmp_path / "huge.jsonl"
    huge = json.dumps({"abstract": "x" * (MAX_RECORD_BYTES + 10)})
    path.write_text("\n".join([json.dumps({"abstract": "a fine text"}), huge, json.dumps({"abstract": "another"})]) + "\n")
    (tmp_path / "huge.txt").write_text("short line\n" + "y" * (MAX_RECORD_BYTES + 1) + "\n")
    skips = SkipLog()
    assert list(iter_texts(str(path), "abstract", skips)) == ["a fine text", "another"]
    assert list(iter_texts(str(tmp_path / "huge.txt"), "abstract", skips)) == ["short line"]
    assert skips.total == 2 and "record over 1 MiB" in skips.summary()
