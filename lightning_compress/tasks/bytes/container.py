"""The compressed file: a fixed 78-byte header that checks itself, then the coder's words.

    offset  size  field (little-endian)
    0       4     magic b"LCBZ"
    4       1     format version (3; 2 and 1 are still read)
    5       8     model identity: first 8 bytes of the sha256 of every weight of the byte model
    13      8     length of the original in bytes
    21      4     chunk_bytes
    25      2     batch: chunks coded together (part of the stream's layout)
    27      2     torch intra-op threads when encoding (decoding repeats the same arithmetic)
    29      1     device type: 0 cpu, 1 cuda
    30      32    sha256 of the original
    62      4     payload words (uint32 each)
    66      4     CRC-32 of the payload
    70      4     CRC-32 of bytes 0..69 and 74..77 (format 1 and 2: of bytes 0..69)
    74      4     arithmetic probe, `coder.arithmetic_probe` (format 1 and 2: reserved, 0)
    78      ...   payload: the range coder's uint32 words

Formats 3 (this release) and 2 code with the lean Llama step (`llama_step.py`), format 1 with
the transformers forward; the two give logits that differ in the last bits, so a file is
decoded with the stepper of its version (both are kept).

Format 3 adds the probe: a fingerprint of the model's first coder steps as the encoding
machine computed them. The decoder recomputes it and refuses a machine whose arithmetic
differs (another torch build or set of CPU kernels) before decoding anything, where a format-2
file is decoded in full and then fails its sha256 check.

Every header field is checked against its legal range, and the claimed length against what
the payload can hold, before any model work (a header with valid CRCs can still be crafted).

A binary header keeps the container's cost to 78 bytes, so the file stays within 1% of the
model's cross-entropy bound from a few kilobytes of compressed data on. A wrong magic or
version, a damaged header or payload (CRC), a truncated file, a different model, and a
decoded result whose sha256 differs each raise `ContainerError`.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from contextlib import contextmanager

import numpy as np
import torch

from .coder import FREQ_BITS, max_symbols

MAGIC = b"LCBZ"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
PROBED_VERSION = 3  # the first format whose header holds an arithmetic probe
MAX_THREADS = 1024
DEVICES = ("cpu", "cuda")
_BODY = struct.Struct("<4sB8sQIHHB32sII")
_HEADER_SIZE = _BODY.size + 8  # + header CRC + reserved
HEADER_SIZE = _HEADER_SIZE


class ContainerError(ValueError):
    """A compressed file that cannot be decoded as it is."""


def this_machine() -> str:
    """What decides the model's arithmetic here: torch build, and the CPU kernels ATen picks."""
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()} CPU kernels"


def checksum_mismatch(source: str) -> ContainerError:
    # The model's float arithmetic must repeat bit for bit; a different torch build, device or
    # set of CPU kernels (AVX2 vs AVX-512 dispatch) can move a logit's last bits and so a token.
    return ContainerError(f"{source}: decoded data fails its sha256 check; decompress with the torch build, device "
                          f"and kind of CPU (AVX2 / AVX-512) it was compressed on (here: {this_machine()})")


def check_probe(source: str, recorded: int, probe_here) -> None:
    """Refuse a file whose arithmetic probe (`coder.arithmetic_probe`; 0: none recorded) differs
    from this machine's, which `probe_here()` computes, before any decoding."""
    if recorded:
        here = probe_here()
        if here != recorded:
            raise probe_mismatch(source, recorded, here)


def probe_mismatch(source: str, recorded: int, here: int) -> ContainerError:
    return ContainerError(f"{source}: its arithmetic probe does not match this machine's ({recorded:08x} recorded, "
                          f"{here:08x} here): it was compressed where the model computes differently, so it cannot "
                          "decode here exactly (decompress with the torch build, device and kind of CPU (AVX2 / "
                          f"AVX-512) it was compressed on; here: {this_machine()}), or its header was altered")


@contextmanager
def undecodable(source: str):
    """Any failure of the range decoder (constriction asserts on a stream that is not what the
    header says) becomes the one-line ContainerError."""
    try:
        yield
    except ContainerError:
        raise
    except (AssertionError, ValueError, RuntimeError, IndexError, OverflowError) as error:
        raise ContainerError(f"{source}: the compressed data does not decode ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else 'no detail'}); the file is damaged "
                             "or its header was altered") from error


def model_hash(model: torch.nn.Module) -> str:
    """Exact identity of a byte model: sha256 over every tensor's bytes, in name order (16 hex)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def pack(header: dict, words: np.ndarray) -> bytes:
    payload = np.ascontiguousarray(words, dtype="<u4").tobytes()
    body = _BODY.pack(
        MAGIC, VERSION, bytes.fromhex(header["model"]), header["length"], header["chunk_bytes"], header["batch"],
        header["threads"], DEVICES.index(header["device"]), bytes.fromhex(header["sha256"]), len(payload) // 4,
        zlib.crc32(payload),
    )
    probe = struct.pack("<I", header["probe"])
    return body + struct.pack("<I", zlib.crc32(body + probe)) + probe + payload


def unpack(data: bytes, source: str = "input") -> tuple[dict, np.ndarray]:
    if len(data) < _HEADER_SIZE:
        if data[:4] not in (MAGIC[: len(data)], MAGIC):
            raise ContainerError(f"{source}: not a lightning_compress byte-model file (magic {data[:4]!r}, expected {MAGIC!r})")
        raise ContainerError(f"{source}: {len(data)} bytes is too short for a compressed file (truncated?)")
    body = data[: _BODY.size]
    magic, version, model, length, chunk_bytes, batch, threads, device, sha256, words, payload_crc = _BODY.unpack(body)
    if magic != MAGIC:
        raise ContainerError(f"{source}: not a lightning_compress byte-model file (magic {magic!r}, expected {MAGIC!r})")
    if version not in READABLE_VERSIONS:
        raise ContainerError(f"{source}: format version {version}; this lightning_compress reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))} (written by a newer release?)")
    header_crc, probe = struct.unpack_from("<II", data, _BODY.size)
    probed = version >= PROBED_VERSION
    if zlib.crc32(body + struct.pack("<I", probe) if probed else body) != header_crc:
        raise ContainerError(f"{source}: the header is damaged (CRC-32 mismatch)")
    payload = data[_HEADER_SIZE:]
    if len(payload) != 4 * words:
        raise ContainerError(f"{source}: payload is {len(payload)} bytes, the header says {4 * words} (truncated?)")
    if zlib.crc32(payload) != payload_crc:
        raise ContainerError(f"{source}: the compressed data is damaged (CRC-32 mismatch)")
    header = {"version": version, "model": model.hex(), "length": length, "chunk_bytes": chunk_bytes, "batch": batch,
              "threads": threads, "device": DEVICES[device] if device < len(DEVICES) else device, "sha256": sha256.hex(),
              "probe": probe if probed else 0}
    check_fields(header, words, source)
    return header, np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def check_fields(header: dict, words: int, source: str) -> None:
    """Each field in its legal range and the length within the payload's capacity."""
    def bad(field: str, expected: str):
        raise ContainerError(f"{source}: header field {field}={header[field]} is invalid (expected {expected}); "
                             "the file is damaged or was not written by lightning_compress")

    if not 1 <= header["chunk_bytes"]:
        bad("chunk_bytes", ">= 1")
    if not 1 <= header["batch"]:
        bad("batch", ">= 1")
    if not 1 <= header["threads"] <= MAX_THREADS:
        bad("threads", f"1..{MAX_THREADS}")
    if header["device"] not in DEVICES:
        bad("device", f"one of {', '.join(f'{i} ({d})' for i, d in enumerate(DEVICES))}")
    capacity = max_symbols(words, 256, FREQ_BITS)
    if header["length"] > capacity:
        raise ContainerError(f"{source}: the header claims {header['length']:,} bytes, more than its {4 * words:,}-byte "
                             f"payload can hold (at most {capacity:,}); the file is damaged")
