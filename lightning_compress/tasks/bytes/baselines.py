"""The classical lossless codecs the byte model is measured against, at their strongest
settings. Each returns the compressed size in bytes; the ratio is that over the raw size.

General-purpose (any bytes): gzip -9, bzip2 -9, LZMA2 (xz -9e), zstd -19, brotli -q 11.
Domain codecs on the decoded signal: PNG (level 9) and JPEG-XL lossless (effort 9) on
the pixels, FLAC (compression level 8) on the PCM samples.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma

import numpy as np


def _zstd(data: bytes) -> int:
    import zstandard

    return len(zstandard.ZstdCompressor(level=19).compress(data))


def _brotli(data: bytes) -> int:
    import brotli

    return len(brotli.compress(data, quality=11))


GENERAL = {
    "gzip -9": lambda d: len(gzip.compress(d, compresslevel=9, mtime=0)),
    "bzip2 -9": lambda d: len(bz2.compress(d, 9)),
    "LZMA2 (xz -9e)": lambda d: len(lzma.compress(d, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)),
    "zstd -19": _zstd,
    "brotli -q 11": _brotli,
}


def png_size(pixels: np.ndarray) -> int:
    import imagecodecs

    return len(imagecodecs.png_encode(np.ascontiguousarray(pixels.squeeze()), level=9))


def jpegxl_size(pixels: np.ndarray) -> int:
    import imagecodecs

    return len(imagecodecs.jpegxl_encode(np.ascontiguousarray(pixels.squeeze()), lossless=True, effort=9))


def flac_size(samples: np.ndarray, samplerate: int) -> int:
    """samples: int16 [frames, channels]."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, samplerate, format="FLAC", subtype="PCM_16", compression_level=1.0)
    return len(buffer.getvalue())
