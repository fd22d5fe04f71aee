"""Text records from local files (JSON Lines, JSON arrays, Parquet, CSV, plain text with one
record per line, MediaWiki XML dumps with one record per prose line; .gz too) or a hub id.

Bad records never stop an epoch: a malformed JSON line, a record without the text field,
an empty text or bytes that are not UTF-8 are skipped and counted in `SkipLog`, with the
file and line of the first few, so a user can find and fix them.
"""

from __future__ import annotations

import csv
import glob
import gzip
import html
import io
import itertools
import json
import logging
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt", ".xml")
# A line-based record (JSON Lines, plain text) longer than this is skipped and counted: every
# task cuts texts to a few thousand tokens, and parsing and tokenising one 50 MB record took
# 6.4 GB of memory.
MAX_RECORD_BYTES = 1 << 20
SAMPLE = "sample"


def shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Items in a seeded random order, holding at most `size` at a time (a shuffle buffer:
    a stream is never read whole). The same items and rng state give the same order, which
    is what lets a resumed run skip exactly what it had already seen."""
    buffer = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def repeated_passes(one_pass, why_empty) -> Iterator:
    """Training's stream: pass after pass over a split without end (runs stop at
    trainer.max_steps, so every DDP rank always has a next batch and none waits at an epoch
    end the others never reach). `one_pass(index)` yields pass `index` (its own shuffle);
    a pass that yields nothing raises ValueError(why_empty()) instead of looping forever."""
    for index in itertools.count():
        produced = 0
        for example in one_pass(index):
            produced += 1
            yield example
        if not produced:
            raise ValueError(why_empty())


def shipped_sample() -> Path:
    return Path(__file__).resolve().parent.parent / "lightning_compress" / "assets" / "arxiv_abstracts_sample.jsonl.gz"


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


@dataclass
class SkipLog:
    """Counts of skipped records by reason, with the location of the first few."""

    counts: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {reason}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no records skipped"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())
        return f"skipped {self.total} records ({reasons}); first: " + "; ".join(self.examples)


def resolve_local(source: str) -> list[Path] | None:
    """Files named by `source` (file, directory or glob), or None if it names nothing local."""
    if source == SAMPLE:
        return [shipped_sample()]
    path = Path(source).expanduser()
    if path.is_file():
        if _kind(path) is None:
            raise ValueError(f"data.source={source!r}: unsupported file type; expected one of {SUFFIXES} (optionally .gz)")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p))
        if not files:
            raise ValueError(f"data.source={source!r}: directory holds no {'/'.join(SUFFIXES)} files")
        return files
    if any(ch in source for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if _kind(Path(p)))
        if not files:
            raise ValueError(f"data.source={source!r}: the glob matches no {'/'.join(SUFFIXES)} files")
        return files
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise FileNotFoundError(f"data.source={source!r}: no such file or directory ({path.resolve()})")
    if _kind(path) is not None:  # nope.jsonl, data/nope.jsonl: a mistyped file, not a hub id
        raise FileNotFoundError(f"data.source={source!r}: no such file ({path.resolve()}); a hub dataset id "
                                "(owner/name) has no file extension")
    return None  # a hub dataset id


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    return raw


def _clean(value, where: str, skips: SkipLog, text_field: str) -> str | None:
    if value is None:
        skips.skip(f"missing `{text_field}`", where)
        return None
    if not isinstance(value, str):
        skips.skip(f"`{text_field}` is not a string", where)
        return None
    text = " ".join(value.split())
    if not text:
        skips.skip("empty text", where)
        return None
    return text


def _json_lines(path: Path, text_field: str, skips: SkipLog) -> Iterator[str]:
    with _open_text(path) as raw:
        for number, line in enumerate(raw, start=1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            if len(line) > MAX_RECORD_BYTES:
                skips.skip(f"record over {MAX_RECORD_BYTES >> 20} MiB", where)
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                skips.skip("not UTF-8", where)
                continue
            except json.JSONDecodeError as err:
                skips.skip(f"malformed JSON ({err.msg})", where)
                continue
            if not isinstance(record, dict):
                skips.skip("not a JSON object", where)
                continue
            text = _clean(record.get(text_field), where, skips, text_field)
            if text is not None:
                yield text


def _json_array_or_lines(path: Path, text_field: str, skips: SkipLog) -> Iterator[str]:
    with _open_text(path) as raw:
        head = raw.read(4096).lstrip()[:1]
    if head == b"[":
        with _open_text(path) as raw:
            try:
                records = json.loads(raw.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                skips.skip(f"unreadable JSON array ({err})", str(path))
                return
        for index, record in enumerate(records):
            where = f"{path}[{index}]"
            if isinstance(record, dict):
                text = _clean(record.get(text_field), where, skips, text_field)
                if text is not None:
                    yield text
            else:
                skips.skip("not a JSON object", where)
        return
    yield from _json_lines(path, text_field, skips)


def _parquet(path: Path, text_field: str, skips: SkipLog) -> Iterator[str]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    if text_field not in table.schema_arrow.names:
        skips.skip(f"no column `{text_field}` (columns: {table.schema_arrow.names})", str(path))
        return
    row = 0
    for batch in table.iter_batches(columns=[text_field]):
        for value in batch.column(0).to_pylist():
            row += 1
            text = _clean(value, f"{path}:row {row}", skips, text_field)
            if text is not None:
                yield text


def _csv(path: Path, text_field: str, skips: SkipLog) -> Iterator[str]:
    with _open_text(path) as raw:
        data = raw.read()
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError:
        skips.skip("not UTF-8 (whole file)", str(path))
        return
    reader = csv.DictReader(io.StringIO(content, newline=""))
    if reader.fieldnames is None or text_field not in reader.fieldnames:
        skips.skip(f"no column `{text_field}` (columns: {reader.fieldnames})", str(path))
        return
    for record in reader:
        text = _clean(record.get(text_field), f"{path}:{reader.line_num}", skips, text_field)
        if text is not None:
            yield text


def _plain_lines(path: Path, text_field: str, skips: SkipLog) -> Iterator[str]:
    """A plain text file: each non-blank line is one text (`text_field` does not apply)."""
    with _open_text(path) as raw:
        for number, line in enumerate(raw, start=1):
            if not line.strip():
                continue
            if len(line) > MAX_RECORD_BYTES:
                skips.skip(f"record over {MAX_RECORD_BYTES >> 20} MiB", f"{path}:{number}")
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                skips.skip("not UTF-8", f"{path}:{number}")
                continue
            yield " ".join(text.split())


_WIKI_MARKUP = [
    (re.compile(r"\{\{[^{}]*\}\}"), ""),  # templates (innermost first, repeated below)
    (re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", re.S), ""),
    (re.compile(r"<[^>]+>"), ""),  # other tags
    (re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]]*)\]\]"), r"\1"),  # [[target|label]] -> label
    (re.compile(r"\[https?://\S+\s*([^\]]*)\]"), r"\1"),  # [url label] -> label
    (re.compile(r"'{2,}"), ""),  # bold / italics
]


def _wiki_paragraph(line: str) -> str:
    for _ in range(3):  # nested templates
        line = _WIKI_MARKUP[0][0].sub("", line)
    for pattern, replacement in _WIKI_MARKUP[1:]:
        line = pattern.sub(replacement, line)
    return " ".join(html.unescape(line).split())


def _wiki_xml(path: Path, text_field: str, skips: SkipLog) -> Iterator[str]:
    """A Wikipedia/MediaWiki XML dump (e.g. enwik8): each prose line inside <text> is one text,
    markup stripped; headings, lists, tables, templates and links-only lines are passed over.
    `text_field` does not apply."""
    inside = False
    with _open_text(path) as raw:
        for number, line in enumerate(raw, start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                skips.skip("not UTF-8", f"{path}:{number}")
                continue
            if "<text" in text:
                inside, text = True, text.split(">", 1)[-1]
            if not inside:
                continue
            if "</text>" in text:
                inside, text = False, text.split("</text>", 1)[0]
            stripped = html.unescape(text).strip()
            if not stripped or stripped[0] in "=*#:;|!{}[&<" or stripped.startswith(("{{", "}}")):
                continue
            paragraph = _wiki_paragraph(stripped)
            if len(paragraph) > 1:
                yield paragraph


READERS = {".jsonl": _json_lines, ".json": _json_array_or_lines, ".parquet": _parquet, ".csv": _csv, ".txt": _plain_lines,
           ".xml": _wiki_xml}


class DataFileError(ValueError):
    """A data file that cannot be read as what its name says (not gzip, truncated, not
    Parquet, ...): the message names the file, whenever the reader reaches the damage."""


def iter_local_texts(files: list[Path], text_field: str, skips: SkipLog) -> Iterator[str]:
    for path in files:
        kind = _kind(path)
        try:
            yield from READERS[kind](path, text_field, skips)
        except (OSError, EOFError, zlib.error, ValueError) as err:
            if str(path) in str(err):  # a reader's own message already names the file
                raise
            detail = " ".join(str(err).split()) or type(err).__name__
            raise DataFileError(f"{path}: cannot be read as {kind}{' (gzip)' if path.name.lower().endswith('.gz') else ''}: "
                                f"{type(err).__name__}: {detail}") from err


# Compressed files up to this size are read through once before a run starts; a larger one
# is checked as the run reaches it (reading it first would cost more than it saves).
PREFLIGHT_GZIP_BYTES = 512 << 20


def check_local_source(source: str) -> list[Path] | None:
    """What a task's preflight calls: `source` resolved as `resolve_local` does, and every
    gzip file of it (up to PREFLIGHT_GZIP_BYTES) decompressed once, so a file that is not
    gzip or is truncated fails before any model loads, naming the file, instead of when the
    reader reaches its end mid-run."""
    files = resolve_local(source)
    for path in files or []:
        if path.name.lower().endswith(".gz") and path.stat().st_size <= PREFLIGHT_GZIP_BYTES:
            try:
                with gzip.open(path, "rb") as handle:
                    while handle.read(1 << 20):
                        pass
            except (OSError, EOFError, zlib.error) as err:
                detail = " ".join(str(err).split()) or type(err).__name__
                raise DataFileError(f"{path}: not a complete gzip file ({type(err).__name__}: {detail})") from None
    return files


def iter_hub_texts(dataset_id: str, split: str, text_field: str, skips: SkipLog, shard: tuple[int, int] | None = None) -> Iterator[str]:
    """Stream a hub dataset (needs network or a local `datasets` cache). With `shard`
    (index, count), only that reader's share: `datasets.distributed.split_dataset_by_node`
    gives each reader whole files when the dataset's file shards divide evenly among the
    readers, and otherwise streams everything and keeps one record in `count`."""
    from datasets import load_dataset

    stream = load_dataset(dataset_id, split=split, streaming=True)
    if shard is not None and shard[1] > 1:
        from datasets.distributed import split_dataset_by_node

        index, count = shard
        if index == 0:
            how = ("each reads its own files" if stream.num_shards % count == 0
                   else "not divisible: each streams every file and keeps 1 record in %d" % count)
            log.info("hub dataset %s: %d file shards over %d readers (ranks x workers): %s",
                     dataset_id, stream.num_shards, count, how)
        stream = split_dataset_by_node(stream, rank=index, world_size=count)
    for position, record in enumerate(stream):
        text = _clean(record.get(text_field), f"{dataset_id}[{split}][{position}]", skips, text_field)
        if text is not None:
            yield text


def is_hub_source(source: str) -> bool:
    return resolve_local(source) is None


def iter_texts(source: str, text_field: str, skips: SkipLog, hub_split: str = "train",
               shard: tuple[int, int] | None = None) -> Iterator[str]:
    """Texts of `source`. `shard` (index, count) is honoured by hub sources only (their
    reader's share, see iter_hub_texts); local files are read whole and sharded by the caller."""
    files = resolve_local(source)
    if files is None:
        return iter_hub_texts(source, hub_split, text_field, skips, shard)
    return iter_local_texts(files, text_field, skips)
