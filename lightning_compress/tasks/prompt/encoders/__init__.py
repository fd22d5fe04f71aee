"""Encoder registry: `model.encoder.name` -> a builder `(decoder, cfg) -> KVEncoder`.

| name          | blocks                        | trainable                                  |
|---------------|-------------------------------|--------------------------------------------|
| full          | copy of the decoder's blocks  | all encoder weights + memory slots         |
| mlp_free      | copy, every MLP removed (AOC) | all encoder weights + memory slots         |
| lora          | decoder's blocks, shared      | LoRA adapters + memory slots               |
| lora_mlp_free | shared, MLPs removed          | LoRA adapters + memory slots               |
"""

from __future__ import annotations

from typing import Callable

from .base import KVEncoder

ENCODERS: dict[str, Callable] = {}


def register_encoder(name: str):
    def wrap(builder: Callable) -> Callable:
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} registered twice")
        ENCODERS[name] = builder
        return builder

    return wrap


def build_encoder(name: str, decoder, memory_tokens: int, position_layout: str = "consistent", **options) -> KVEncoder:
    if name not in ENCODERS:
        raise ValueError(f"model.encoder.name={name!r}; registered encoders: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name](decoder, memory_tokens=memory_tokens, position_layout=position_layout, **options)


from . import copied, lora  # noqa: E402,F401  (registers the builders)
