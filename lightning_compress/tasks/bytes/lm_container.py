"""The file of the token coder: a compact header that checks itself, then the coder's words.

    size  field
    4     magic b"LCLM"
    1     format version (2; 1 is still read)
    1     flags: bits 0-1 stepper (0 transformers forward, 1 lean Llama step), bits 2-3 model
          dtype (0 float32, 1 bfloat16, 2 float16), bits 4-5 device (0 cpu, 1 cuda)
    8     identity of the model AND its token table: sha256 of both identities, first 8 bytes
    8     sha256 of the original, first 8 bytes (checked after decoding)
    var   LEB128 unsigned integers: length of the original in bytes, tokens coded, window (tokens
          per window, each coded from a fresh context), batch (windows coded together: part of
          the stream's layout), torch intra-op threads when encoding, start token id, escaped
          bytes E, length S of the model source, arithmetic probe (format 2 on; see
          `container.py`: refuses a machine that computes the model differently up front)
    S     model source, UTF-8 (`decoder.source`: "embedded", a hub id, a directory, a .gguf)
    E     escaped bytes (bytes without a single-byte token, stored raw)
    4     CRC-32 of the header above and of the payload
    ...   payload: the range coder's uint32 words

Small because the LM codes text at ~1.2 bits/byte: a 32 KB text becomes ~5 KB, where every
40 bytes of header cost 1% (about 50 bytes for the embedded model). The source lets `lcompress
decompress` load the model by itself; the identity refuses a model whose weights or tokens
differ. Every field is checked against its legal range before any model work, and any
failure of the decoder ends in the one ContainerError.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np

from .config import LM_DTYPES
from .container import DEVICES, MAX_THREADS, ContainerError

MAGIC = b"LCLM"
VERSION = 2
READABLE_VERSIONS = (1, 2)
STEPPERS = ("transformers", "lean-llama")
DTYPES = LM_DTYPES  # flag bits 2-3 are the index: the order is part of the format
MAX_WINDOW = 1 << 20
_FIXED = struct.Struct("<4sBB8s8s")
FIELDS_V1 = ("length", "tokens", "window", "batch", "threads", "start_token", "escaped", "source_length")
FIELDS = FIELDS_V1 + ("probe",)


def identity(model_identity: str, tokens_identity: str) -> str:
    return hashlib.sha256(f"{model_identity}:{tokens_identity}".encode()).hexdigest()[:16]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int, source: str) -> tuple[int, int]:
    value = shift = 0
    for position in range(offset, min(len(data), offset + 10)):
        value |= (data[position] & 0x7F) << shift
        if not data[position] & 0x80:
            return value, position + 1
        shift += 7
    raise ContainerError(f"{source}: the header ends early or is damaged (truncated?)")


def pack(header: dict, escaped: bytes, words: np.ndarray) -> bytes:
    payload = np.ascontiguousarray(words, dtype="<u4").tobytes()
    source = header["source"].encode("utf-8")
    flags = STEPPERS.index(header["stepper"]) | DTYPES.index(header["dtype"]) << 2 | DEVICES.index(header["device"]) << 4
    values = {**header, "escaped": len(escaped), "source_length": len(source)}
    head = (_FIXED.pack(MAGIC, VERSION, flags, bytes.fromhex(header["identity"]), bytes.fromhex(header["sha256"]))
            + b"".join(_varint(values[name]) for name in FIELDS) + source + escaped)
    return head + struct.pack("<I", zlib.crc32(payload, zlib.crc32(head))) + payload


def is_lm_file(data: bytes) -> bool:
    return data[:4] == MAGIC


def unpack(data: bytes, source: str = "input") -> tuple[dict, bytes, np.ndarray]:
    """(header, escaped bytes, payload words); ContainerError for anything but an intact file."""
    if data[:4] != MAGIC[: len(data[:4])]:
        raise ContainerError(f"{source}: not a lightning_compress token-coder file (magic {data[:4]!r}, expected {MAGIC!r})")
    if len(data) < _FIXED.size:
        raise ContainerError(f"{source}: {len(data)} bytes is too short for a token-coder file (truncated?)")
    _, version, flags, ident, sha = _FIXED.unpack_from(data)
    if version not in READABLE_VERSIONS:
        raise ContainerError(f"{source}: token-coder format version {version}; this lightning_compress reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))} (written by a newer release?)")
    header, offset = {"probe": 0}, _FIXED.size
    for name in FIELDS if version >= 2 else FIELDS_V1:
        header[name], offset = _read_varint(data, offset, source)
    header_end = offset + header["source_length"] + header["escaped"]
    if len(data) < header_end + 4:
        raise ContainerError(f"{source}: {len(data)} bytes is too short for its header of {header_end + 4} (truncated?)")
    (crc,) = struct.unpack_from("<I", data, header_end)
    payload = data[header_end + 4 :]
    if len(payload) % 4 or zlib.crc32(payload, zlib.crc32(data[:header_end])) != crc:
        raise ContainerError(f"{source}: the file is damaged or truncated (CRC-32 mismatch)")
    try:
        model_source = data[offset : offset + header["source_length"]].decode("utf-8")
    except UnicodeDecodeError:
        raise ContainerError(f"{source}: the model source in the header is not UTF-8; the file is damaged") from None
    header.update(version=version, stepper=flags & 3, dtype=flags >> 2 & 3, device=flags >> 4 & 3,
                  identity=ident.hex(), sha256=sha.hex(), source=model_source)
    _check_fields(header, source)
    header.update(stepper=STEPPERS[header["stepper"]], dtype=DTYPES[header["dtype"]], device=DEVICES[header["device"]])
    escaped = data[offset + header["source_length"] : header_end]
    return header, escaped, np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def _check_fields(header: dict, source: str) -> None:
    def bad(field: str, expected: str):
        raise ContainerError(f"{source}: header field {field}={header[field]} is invalid (expected {expected}); "
                             "the file is damaged or was not written by lightning_compress")

    for field, names in (("stepper", STEPPERS), ("dtype", DTYPES), ("device", DEVICES)):
        if header[field] >= len(names):
            bad(field, " | ".join(f"{i} ({n})" for i, n in enumerate(names)))
    if not 1 <= header["window"] <= MAX_WINDOW:
        bad("window", f"1..{MAX_WINDOW}")
    if not 1 <= header["batch"] <= 0xFFFF:
        bad("batch", "1..65535")
    if not 1 <= header["threads"] <= MAX_THREADS:
        bad("threads", f"1..{MAX_THREADS}")
    # Every token spells at least one byte (an escape exactly one): tokens <= length, escapes <= tokens.
    if header["tokens"] > header["length"] or header["escaped"] > header["tokens"] or (header["length"] and not header["tokens"]):
        bad("tokens", f"between 1 and the length ({header['length']}) for a non-empty file, and at least the "
                      f"{header['escaped']} escaped bytes")
