"""General-purpose lossless codecs at their strongest settings, as the baselines every task
that reports a compressed size is measured against. Each maps bytes to the compressed size
in bytes."""

from __future__ import annotations

import bz2
import gzip
import lzma


def zstd_size(data: bytes) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=19).compress(data))


def brotli_size(data: bytes) -> int:
    import brotli

    return len(brotli.compress(data, quality=11))


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


GENERAL = {
    "gzip -9": gzip_size,
    "bzip2 -9": lambda d: len(bz2.compress(d, 9)),
    "LZMA2 (xz -9e)": lambda d: len(lzma.compress(d, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)),
    "zstd -19": zstd_size,
    "brotli -q 11": brotli_size,
}
