"""Byte-level transformers as lossless compressors (arithmetic coding with constriction)."""
