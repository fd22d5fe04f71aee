"""The classical lossless codecs the byte model is measured against, at their strongest
settings. Each returns the compressed size in bytes; the ratio is that over the raw size.

General-purpose (any bytes): gzip -9, bzip2 -9, LZMA2 (xz -9e), zstd -19, brotli -q 11 (the
core's `codecs.GENERAL`).
Domain codecs on the decoded signal: PNG (level 9) and JPEG-XL lossless (effort 9) on
the pixels, FLAC (compression level 8) on the PCM samples.
"""

from __future__ import annotations

import io

import numpy as np


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
