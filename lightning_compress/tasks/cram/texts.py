"""The texts to cram: token ids of exactly `cram.length` tokens each.

From `data.source` (read by data_modules.records: bad records are skipped and counted with
file and line), cut to the first `cram.length` tokens; texts with fewer tokens are passed
over and counted. Or, with `data.random_tokens`, the paper's control: uniformly random ids
of the vocabulary without its special tokens (the paper samples random words instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from data_modules.records import SkipLog, iter_texts

from ...config import ConfigError


@dataclass
class CramText:
    # Position among the texts of this config (stable across runs and resumes).
    index: int
    ids: list
    text: str


def load_texts(cfg: DictConfig, tokenizer) -> tuple[list[CramText], str]:
    """(texts, a one-line report of what was passed over)."""
    length, wanted = cfg.cram.length, cfg.data.num_texts
    if cfg.data.random_tokens:
        special = set(tokenizer.all_special_ids)
        vocab = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
        generator = torch.Generator().manual_seed(cfg.seed)
        texts = []
        for index in range(wanted):
            ids = vocab[torch.randint(len(vocab), (length,), generator=generator)].tolist()
            texts.append(CramText(index, ids, tokenizer.decode(ids)))
        return texts, f"{wanted} texts of {length} random token ids"
    skips, short, texts = SkipLog(), 0, []
    stream = iter_texts(cfg.data.source, cfg.data.text_field, skips, cfg.data.hub_split)
    for position, text in enumerate(stream):
        if position < cfg.data.skip_texts:
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) < length:
            short += 1
            continue
        ids = ids[:length]
        texts.append(CramText(len(texts), ids, tokenizer.decode(ids)))
        if len(texts) == wanted:
            break
    report = f"{len(texts)} texts of {length} tokens from {cfg.data.source}; passed over {short} shorter texts; {skips.summary()}"
    if len(texts) < wanted:
        raise ConfigError(
            f"data.source={cfg.data.source!r} holds only {len(texts)} texts with at least cram.length={length} tokens "
            f"(data.num_texts={wanted}, data.skip_texts={cfg.data.skip_texts}): {report}"
        )
    return texts, report
