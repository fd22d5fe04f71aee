"""compress / decompress with a trained ByteLM: bytes in memory or files on disk.

    from lightning_compress.tasks.bytes.api import load_byte_model, compress_bytes, decompress_bytes
    model = load_byte_model("runs/bytes/version_0/checkpoints/last.ckpt")
    blob, stats = compress_bytes(model, data)
    assert decompress_bytes(model, blob) == data

Files are written to a temporary name and renamed, and only after decompression has been
verified against the original's sha256: a failed or refused run leaves no output file.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from ...atomic import atomic_write_bytes
from ...checkpoint_io import Checkpoint, load_checkpoint
from .coder import (NewStepper, arithmetic_probe, decode_sequences, encode_sequences, lean_stepper, threads,
                    transformers_stepper)
from .container import VERSION, ContainerError, check_probe, checksum_mismatch, model_hash, pack, undecodable, unpack
from .config import TASK
from .model import BOS, ByteLM

DEFAULT_BATCH = 64


def load_byte_model(checkpoint: str | os.PathLike | Checkpoint, device: str | None = None) -> ByteLM:
    """A trained ByteLM from its checkpoint (read with the safe loader: no code runs)."""
    if isinstance(checkpoint, (str, os.PathLike)):
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"byte model checkpoint {checkpoint} does not exist (train one with `make train-bytes`)")
        checkpoint = load_checkpoint(checkpoint, task=TASK)
    model = ByteLM(**checkpoint.raw["hyper_parameters"])
    model.load_state_dict(checkpoint.state_dict)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


def byte_stepper(model: ByteLM, version: int = VERSION):
    """(batch, length) -> the stepper a file of this format version is coded with."""
    return (transformers_stepper if version == 1 else lean_stepper)(model.net, vocab=256)


def chunk_probe(model: ByteLM, lengths: list[int], batch: int, version: int = VERSION,
                stepper: NewStepper | None = None) -> int:
    """The arithmetic probe of coding chunks of these lengths (`coder.arithmetic_probe`).
    `stepper`: one already built by `byte_stepper` for this model and version, so that a file's
    weights are fused once for its probe and its coding."""
    return arithmetic_probe(stepper or byte_stepper(model, version), lengths, batch, vocab=256)


def encode_chunks(model: ByteLM, chunks: list[bytes], batch: int, progress: bool = True,
                  version: int = VERSION, stepper: NewStepper | None = None) -> tuple[np.ndarray, float]:
    """Range-code byte chunks with the stepper of format `version` (files are written in the
    current one; an older one only to test that its files still decode); returns (uint32
    words, cross-entropy bound in bits)."""
    sequences = [np.frombuffer(c, dtype=np.uint8).astype(np.int64) for c in chunks]
    return encode_sequences(stepper or byte_stepper(model, version), sequences, batch, BOS, pre_quantise=True,
                            progress=progress)


def decode_chunks(model: ByteLM, words: np.ndarray, lengths: list[int], batch: int, version: int = VERSION,
                  progress: bool = True, stepper: NewStepper | None = None) -> list[bytes]:
    sequences = decode_sequences(stepper or byte_stepper(model, version), words, lengths, batch, BOS, pre_quantise=True,
                                 progress=progress)
    return [s.astype(np.uint8).tobytes() for s in sequences]


def compress_bytes(model: ByteLM, data: bytes, chunk_bytes: int | None = None, batch: int = DEFAULT_BATCH,
                   progress: bool = False) -> tuple[bytes, dict]:
    """(compressed file bytes, stats: sizes, the model's cross-entropy bound, seconds)."""
    chunk_bytes = model.context if chunk_bytes is None else chunk_bytes
    if not 1 <= chunk_bytes <= model.context:
        raise ValueError(f"chunk_bytes={chunk_bytes}: must be between 1 and the model's context ({model.context})")
    if not 1 <= batch <= 0xFFFF:
        raise ValueError(f"batch={batch}: must be between 1 and 65535 (the file records it in 16 bits)")
    start = time.perf_counter()
    chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
    device = next(model.parameters()).device
    stepper = byte_stepper(model)
    words, bound_bits = encode_chunks(model, chunks, batch, progress, stepper=stepper)
    header = {
        "model": model_hash(model), "length": len(data), "chunk_bytes": chunk_bytes, "batch": batch,
        "threads": torch.get_num_threads(), "device": device.type, "sha256": hashlib.sha256(data).hexdigest(),
        "probe": chunk_probe(model, [len(c) for c in chunks], batch, stepper=stepper),
    }
    blob = pack(header, words)
    stats = {"raw_bytes": len(data), "compressed_bytes": len(blob), "payload_bytes": 4 * len(words),
             "bound_bytes": bound_bits / 8, "seconds": time.perf_counter() - start}
    return blob, stats


def decompress_bytes(model: ByteLM, blob: bytes, progress: bool = False, source: str = "input") -> bytes:
    header, words = unpack(blob, source)
    identity = model_hash(model)
    if header["model"] != identity:
        raise ContainerError(
            f"{source} was compressed with byte model {header['model']}, not with this one ({identity}): "
            "decompress with the same checkpoint"
        )
    device = next(model.parameters()).device
    if header["device"] != device.type:
        raise ContainerError(f"{source} was compressed on {header['device']}; decompress on {header['device']} too "
                             f"(the arithmetic must repeat exactly), not on {device.type}")
    length, chunk_bytes = header["length"], header["chunk_bytes"]
    if chunk_bytes > model.context:
        raise ContainerError(f"{source}: header field chunk_bytes={chunk_bytes} exceeds the model's context "
                             f"({model.context}); the file is damaged")
    lengths = [min(chunk_bytes, length - i) for i in range(0, length, chunk_bytes)]
    with threads(header["threads"]), undecodable(source):
        stepper = byte_stepper(model, header["version"])
        check_probe(source, header["probe"], lambda: chunk_probe(model, lengths, header["batch"], stepper=stepper))
        chunks = decode_chunks(model, words, lengths, header["batch"], progress=progress, stepper=stepper)
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise checksum_mismatch(source)
    return data


def compress_file(source: str | os.PathLike, target: str | os.PathLike, model: ByteLM, batch: int = DEFAULT_BATCH,
                  chunk_bytes: int | None = None, progress: bool = True) -> dict:
    data = Path(source).read_bytes()
    blob, stats = compress_bytes(model, data, chunk_bytes, batch, progress)
    atomic_write_bytes(target, blob)
    return stats


def decompress_file(source: str | os.PathLike, target: str | os.PathLike, model: ByteLM, progress: bool = True) -> int:
    data = decompress_bytes(model, Path(source).read_bytes(), progress, str(source))
    atomic_write_bytes(target, data)
    return len(data)
