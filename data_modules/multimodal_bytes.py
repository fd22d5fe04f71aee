"""MultimodalBytesDataModule: fixed-length byte chunks of text, images and audio, mixed.

What a modality's bytes are (the documented layout the model and the codecs see):
- text: the file's bytes as they are (plain text, XML, ...); for JSON Lines, the UTF-8 of
  `text_field` of each record, records joined by "\\n".
- images: decoded (Pillow) to 8-bit pixels, `image_mode` "gray" (1 byte a pixel) or "rgb"
  (3, interleaved), cut into `image_patch` = [h, w] patches in raster order (edge patches
  that do not fit are dropped); each patch row-major. With the default 32 x 64 gray patch a
  patch is exactly one 2048-byte chunk, as in DeepMind's "language modeling is compression".
- audio: decoded (soundfile: WAV, FLAC, ...) to PCM with channels interleaved, `audio_bits`
  16 (signed little-endian) or 8 (unsigned: the top byte + 128, as DeepMind's audio).

Each file's stream is cut into `chunk_bytes` chunks; a final shorter piece is not used for
training (counted). Held-out data, per modality: files whose name hashes (sha1) into the
first `heldout_per_mille`; a modality with a single file holds out its last
`heldout_per_mille` of chunks instead. Training mixes modalities by `weights` with a seeded
generator per rank and worker; chunk i of a modality belongs to shard i % (world x workers),
so ranks and workers read disjoint chunks that together cover the training split.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .records import DataFileError

log = logging.getLogger(__name__)

MODALITIES = ("text", "images", "audio")
TEXT_SUFFIXES = (".txt", ".xml", ".json", ".jsonl", ".md", ".csv", ".html")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
SUFFIXES = {"text": TEXT_SUFFIXES, "images": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES}


def resolve_files(spec, modality: str) -> list[Path]:
    """Files named by a path, a directory, a glob, or a list of them (sorted, unique)."""
    if spec is None or spec == "" or spec == []:
        return []
    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)  # a list or OmegaConf ListConfig
    files: list[Path] = []
    for item in specs:
        path = Path(str(item)).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in SUFFIXES[modality])
        elif any(ch in str(item) for ch in "*?["):
            files.extend(p for p in map(Path, sorted(glob.glob(str(path), recursive=True))) if p.is_file())
        else:
            raise FileNotFoundError(f"data.{modality}: {item!r} is no file, directory or matching glob")
    unique = sorted(set(files))
    if not unique:
        raise FileNotFoundError(f"data.{modality}={spec!r} names no {'/'.join(SUFFIXES[modality])} files")
    return unique


def text_bytes(path: Path, text_field: str = "text") -> bytes:
    if path.suffix.lower() == ".jsonl":
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)[text_field]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{number}: expected a JSON object with a {text_field!r} field ({err})") from None
            records.append(str(value))
        return "\n".join(records).encode("utf-8")
    return path.read_bytes()


def load_pixels(path: Path, mode: str = "gray", patch: tuple[int, int] = (32, 64)) -> np.ndarray:
    """8-bit pixels [H, W, channels], cropped to whole patches."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if mode == "gray" else "RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as err:  # PIL: UnidentifiedImageError, truncated data, bad headers
        raise DataFileError(f"{path}: cannot be decoded as an image ({type(err).__name__}: {' '.join(str(err).split())})") from err
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    h, w = patch
    return pixels[: pixels.shape[0] // h * h, : pixels.shape[1] // w * w]


def patch_bytes(pixels: np.ndarray, patch: tuple[int, int]) -> bytes:
    """Cropped pixels as h x w patches in raster order, each patch row-major."""
    h, w = patch
    tiles = pixels.reshape(pixels.shape[0] // h, h, pixels.shape[1] // w, w, -1).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(tiles).tobytes()


def image_bytes(path: Path, mode: str = "gray", patch: tuple[int, int] = (32, 64)) -> bytes:
    return patch_bytes(load_pixels(path, mode, patch), patch)


def pcm_bytes(samples: np.ndarray, bits: int = 16) -> bytes:
    """int16 samples [frames, channels] interleaved: int16 little-endian, or unsigned 8-bit."""
    if bits == 16:
        return samples.astype("<i2").tobytes()
    return ((samples.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()


def load_samples(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise DataFileError(f"{path}: cannot be decoded as audio ({type(err).__name__}: {' '.join(str(err).split())})") from err
    return samples, rate


def audio_bytes(path: Path, bits: int = 16) -> bytes:
    return pcm_bytes(load_samples(path)[0], bits)


def _heldout(path: Path, per_mille: int) -> bool:
    return int(hashlib.sha1(path.name.encode("utf-8")).hexdigest()[:8], 16) % 1000 < per_mille


class ModalityChunks:
    """The chunks of one modality for one split ("train" or "heldout"), in a fixed order."""

    def __init__(self, modality: str, files: list[Path], split: str, chunk_bytes: int, heldout_per_mille: int,
                 text_field: str = "text", image_mode: str = "gray", image_patch=(32, 64), audio_bits: int = 16):
        self.modality, self.split, self.chunk_bytes = modality, split, chunk_bytes
        self.text_field, self.image_mode, self.image_patch, self.audio_bits = text_field, image_mode, tuple(image_patch), audio_bits
        self.single_file = len(files) == 1
        self.heldout_per_mille = heldout_per_mille
        if self.single_file:
            self.files = files
        else:
            self.files = [f for f in files if _heldout(f, heldout_per_mille) == (split == "heldout")]
        self.dropped_tails = 0

    def file_bytes(self, path: Path) -> bytes:
        if self.modality == "text":
            return text_bytes(path, self.text_field)
        if self.modality == "images":
            return image_bytes(path, self.image_mode, self.image_patch)
        return audio_bytes(path, self.audio_bits)

    def __iter__(self):
        """Full chunks only, in file order (held-out tail of a single file by position)."""
        size = self.chunk_bytes
        for path in self.files:
            data = self.file_bytes(path)
            count = len(data) // size
            if len(data) % size:
                self.dropped_tails += 1
            indices = range(count)
            if self.single_file:
                cut = count - max(1, count * self.heldout_per_mille // 1000)
                indices = range(cut, count) if self.split == "heldout" else range(cut)
            for index in indices:
                yield data[index * size : (index + 1) * size]


class MixedByteStream(IterableDataset):
    """Training: an endless, seeded mixture of the modalities' training chunks."""

    def __init__(self, sources: dict[str, ModalityChunks], weights: dict[str, float], seed: int = 0, rank: int = 0, world_size: int = 1):
        self.sources, self.seed, self.rank, self.world_size = sources, seed, rank, world_size
        names = list(sources)
        raw = np.array([float(weights.get(n, 1.0)) for n in names])
        self.names, self.probabilities = names, raw / raw.sum()

    def _shard_chunks(self, name: str, shard: int, shards: int):
        while True:
            produced = 0
            for index, chunk in enumerate(self.sources[name]):
                if index % shards == shard:
                    produced += 1
                    yield chunk
            if not produced:
                raise ValueError(f"data.{name}: no training chunk of {self.sources[name].chunk_bytes} bytes for shard {shard} of {shards}")

    def __iter__(self):
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        shard, shards = self.rank * workers + worker, self.world_size * workers
        rng = np.random.default_rng([self.seed, shard])
        streams = {name: self._shard_chunks(name, shard, shards) for name in self.names}
        while True:
            name = self.names[rng.choice(len(self.names), p=self.probabilities)]
            yield {"bytes": torch.frombuffer(bytearray(next(streams[name])), dtype=torch.uint8), "modality": name}


class HeldoutChunks(IterableDataset):
    """Evaluation: the first `limit` held-out chunks of one modality, split across ranks."""

    def __init__(self, source: ModalityChunks, limit: int, rank: int = 0, world_size: int = 1):
        self.source, self.limit, self.rank, self.world_size = source, limit, rank, world_size

    def __iter__(self):
        for index, chunk in enumerate(self.source):
            if index >= self.limit:
                return
            if index % self.world_size == self.rank:
                yield {"bytes": torch.frombuffer(bytearray(chunk), dtype=torch.uint8), "modality": self.source.modality}


def collate(batch: list[dict]) -> dict:
    return {"bytes": torch.stack([b["bytes"] for b in batch]), "modality": [b["modality"] for b in batch]}


class MultimodalBytesDataModule(pl.LightningDataModule):
    def __init__(self, text=None, images=None, audio=None, chunk_bytes: int = 2048, weights: dict | None = None,
                 batch_size: int = 8, val_chunks: int = 16, heldout_per_mille: int = 100, text_field: str = "text",
                 image_mode: str = "gray", image_patch=(32, 64), audio_bits: int = 16, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if image_mode not in ("gray", "rgb"):
            raise ValueError(f"data.image_mode={image_mode!r}; expected gray or rgb")
        if audio_bits not in (8, 16):
            raise ValueError(f"data.audio_bits={audio_bits}; expected 8 or 16")
        self.files = {m: resolve_files(spec, m) for m, spec in (("text", text), ("images", images), ("audio", audio))}
        self.files = {m: f for m, f in self.files.items() if f}
        self._val_chunks = None  # per modality, this rank's held-out chunks (val_dataloader)
        if not self.files:
            raise ValueError("no data: set at least one of data.text, data.images, data.audio")
        weights = dict(weights or {})
        unknown = set(weights) - set(MODALITIES)
        if unknown:
            raise ValueError(f"data.weights names {sorted(unknown)}; modalities are {MODALITIES}")
        self.weights = {m: float(weights.get(m, 1.0)) for m in self.files}
        if any(w < 0 for w in self.weights.values()) or not sum(self.weights.values()):
            raise ValueError(f"data.weights={self.weights}: need non-negative weights, not all zero")
        self.chunk_bytes, self.batch_size, self.val_chunks = chunk_bytes, batch_size, val_chunks
        self.options = dict(heldout_per_mille=heldout_per_mille, text_field=text_field, image_mode=image_mode,
                            image_patch=tuple(image_patch), audio_bits=audio_bits)
        self.num_workers, self.seed = num_workers, seed

    def chunks(self, modality: str, split: str) -> ModalityChunks:
        return ModalityChunks(modality, self.files[modality], split, self.chunk_bytes, **self.options)

    def heldout_files(self, modality: str) -> list[Path]:
        """Whole held-out files (for codec benchmarks); a single-file modality gives its file."""
        return self.chunks(modality, "heldout").files

    def _rank_world(self):
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self):
        rank, world = self._rank_world()
        sources = {m: self.chunks(m, "train") for m in self.files if self.weights[m] > 0}
        stream = MixedByteStream(sources, self.weights, self.seed, rank, world)
        return DataLoader(stream, batch_size=self.batch_size, collate_fn=collate, num_workers=self.num_workers)

    def val_dataloader(self):
        # Held-out chunks read once and kept as lists: loaders with a length, so the progress
        # bar shows a total, and no file is decoded again at every validation.
        rank, world = self._rank_world()
        if self._val_chunks is None:
            self._val_chunks = {m: list(HeldoutChunks(self.chunks(m, "heldout"), self.val_chunks, rank, world))
                                for m in self.files}
        return [DataLoader(self._val_chunks[m], batch_size=self.batch_size, collate_fn=collate) for m in self.files]
