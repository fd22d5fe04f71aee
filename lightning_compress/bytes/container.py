"""The compressed file: a small self-checking header, then the range coder's words.

    offset  size  field
    0       4     magic b"LCBZ"
    4       1     format version (1)
    5       4     header length H (uint32 little-endian)
    9       4     CRC-32 of the header
    13      H     header: UTF-8 JSON (below)
    13 + H  ...   payload: uint32 little-endian words of the range coder

Header keys: model (sha256 of every weight of the byte model, 16 hex digits), length
(bytes of the original), chunk_bytes, batch (chunks coded together: part of the stream's
layout), threads (torch intra-op threads when encoding: part of the arithmetic that decoding
must repeat), payload_bytes, payload_crc32, sha256 (of the original).
A wrong magic or version, a damaged header or payload (CRC), a truncated file, a different
model, and a decoded result whose sha256 differs each raise `ContainerError`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np
import torch

MAGIC = b"LCBZ"
VERSION = 1
_FIXED = struct.Struct("<4sBII")


class ContainerError(ValueError):
    """A compressed file that cannot be decoded as it is."""


def model_hash(model: torch.nn.Module) -> str:
    """Exact identity of a byte model: sha256 over every tensor's bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def pack(header: dict, words: np.ndarray) -> bytes:
    payload = np.ascontiguousarray(words, dtype="<u4").tobytes()
    header = {**header, "payload_bytes": len(payload), "payload_crc32": zlib.crc32(payload)}
    blob = json.dumps(header, sort_keys=True).encode("utf-8")
    return _FIXED.pack(MAGIC, VERSION, len(blob), zlib.crc32(blob)) + blob + payload


def unpack(data: bytes, source: str = "input") -> tuple[dict, np.ndarray]:
    if len(data) < _FIXED.size:
        raise ContainerError(f"{source}: {len(data)} bytes is too short for a compressed file (truncated?)")
    magic, version, size, crc = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise ContainerError(f"{source}: not a lightning_compress byte-model file (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise ContainerError(f"{source}: format version {version}; this lightning_compress reads version {VERSION}")
    blob = data[_FIXED.size : _FIXED.size + size]
    if len(blob) != size:
        raise ContainerError(f"{source}: truncated inside the header ({len(blob)} of {size} bytes)")
    if zlib.crc32(blob) != crc:
        raise ContainerError(f"{source}: the header is damaged (CRC-32 mismatch)")
    header = json.loads(blob)
    payload = data[_FIXED.size + size :]
    if len(payload) != header["payload_bytes"]:
        raise ContainerError(f"{source}: payload is {len(payload)} bytes, the header says {header['payload_bytes']} (truncated?)")
    if zlib.crc32(payload) != header["payload_crc32"]:
        raise ContainerError(f"{source}: the compressed data is damaged (CRC-32 mismatch)")
    return header, np.frombuffer(payload, dtype="<u4").astype(np.uint32)
