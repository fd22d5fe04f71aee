"""The keyword a transformers 5 release takes for a KV cache.

transformers 5.x renames `past_key_values` to `cache` in model forwards and in
`masking_utils.create_causal_mask` (the old name is deprecated at the rename and removed in
5.40). Passing the name the installed release declares keeps every 5.x working, without the
deprecation warning on releases that have both.
"""

from __future__ import annotations

import functools
import inspect

from transformers.masking_utils import create_causal_mask


def _declares_cache(fn) -> bool:
    # inspect.signature follows functools.wraps, so decorated forwards show their own arguments.
    return "cache" in inspect.signature(fn).parameters


def mask_cache(cache) -> dict:
    """Keyword argument for `create_causal_mask`: {"cache": c} or {"past_key_values": c}."""
    return {("cache" if _declares_cache(create_causal_mask) else "past_key_values"): cache}


@functools.lru_cache(maxsize=None)
def _forward_keyword(model_class: type) -> str:
    return "cache" if _declares_cache(model_class.forward) else "past_key_values"


def forward_cache(model, cache) -> dict:
    """Keyword argument that hands `cache` to `model(...)`."""
    return {_forward_keyword(type(model)): cache}
