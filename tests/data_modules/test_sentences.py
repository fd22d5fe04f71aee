"""SentenceDataModule: sentences split, deduplicated, length-limited with counts, split by hash,
sharded disjointly; bad lines counted, never a crash; MediaWiki XML read as prose."""

from data_modules.records import SkipLog, iter_texts
from data_modules.sentences import SentenceStream, split_sentences


def _encode(text):
    return [len(word) for word in text.split()]  # one id per word


def _write(tmp_path, lines, name="t.txt"):
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_sentences_are_split_deduplicated_limited_and_counted(tmp_path):
    path = _write(tmp_path, [b"One two three four. One two three four. Five six seven eight nine!",
                             b"\xff\xfe not utf-8", b"   ", b"short. " + b"many " * 40 + b"words."])
    stream = SentenceStream(str(path), "all", _encode, min_tokens=3, max_tokens=10)
    got = [text for text, _ in stream.usable()]
    assert got == ["One two three four.", "Five six seven eight nine!"]
    assert stream.counts["duplicate"] == 1 and stream.counts["under min_tokens=3"] == 1
    assert stream.counts["over max_tokens=10"] == 1 and stream.skips.counts["not UTF-8"] == 1


def test_splits_are_disjoint_and_shards_cover_them(tmp_path):
    lines = [f"Sentence number {i} has some words in it.".encode() for i in range(300)]
    path = _write(tmp_path, lines)
    splits = {s: [t for t, _ in SentenceStream(str(path), s, _encode, val_per_mille=100, test_per_mille=100).usable()]
              for s in ("train", "val", "test")}
    assert sum(map(len, splits.values())) == 300 and all(splits.values())
    assert not set(splits["train"]) & set(splits["test"])
    shards = [[e["text"] for e in SentenceStream(str(path), "train", _encode, rank=r, world_size=3, val_per_mille=100,
                                                   test_per_mille=100)] for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(splits["train"]) and len(set(sum(shards, []))) == len(splits["train"])


def test_training_stream_repeats_in_a_seeded_shuffled_order(tmp_path):
    path = _write(tmp_path, [f"Words of sentence {i} here.".encode() for i in range(50)])
    make = lambda seed: SentenceStream(str(path), "all", _encode, repeat=True, shuffle_buffer=16, seed=seed)  # noqa: E731
    first = [e["text"] for _, e in zip(range(100), make(0))]
    assert first == [e["text"] for _, e in zip(range(100), make(0))]
    assert first[:50] != first[50:] and sorted(first[:50]) == sorted(first[50:])
    assert first != [e["text"] for _, e in zip(range(100), make(1))]


def test_split_sentences():
    assert split_sentences("It works.  Does it? Yes!") == ["It works.", "Does it?", "Yes!"]


def test_mediawiki_xml_is_read_as_prose(tmp_path):
    xml = tmp_path / "wiki.xml"
    xml.write_text('<mediawiki><page><title>T</title><text xml:space="preserve">{{Infobox|x=1}}\n'
                   "'''Anarchism''' is a [[political philosophy|philosophy]] of [[law]].<ref>cite</ref>\n"
                   "== History ==\n* a list item\nSecond &amp; last line.</text></page></mediawiki>\n")
    skips = SkipLog()
    assert list(iter_texts(str(xml), "text", skips)) == ["Anarchism is a philosophy of law.", "Second & last line."]
