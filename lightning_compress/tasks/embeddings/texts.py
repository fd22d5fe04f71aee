"""The texts of an embedding-compression run, split by a hash of each text (as the prompt task
splits its abstracts): `test` is reported, `val` selects the autoencoder's epoch, `train` gives
the token frequencies of the weighted SVD. No text is in two splits."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from data_modules.arxiv_abstracts import split_of
from data_modules.records import SkipLog, iter_texts

from ...config import ConfigError


@dataclass
class SplitTexts:
    test: list = field(default_factory=list)  # token ids, each cut to data.max_tokens
    val: list = field(default_factory=list)
    train: list = field(default_factory=list)  # whole texts, for the frequencies
    report: str = ""


def load_split_texts(cfg: DictConfig, tokenizer) -> SplitTexts:
    d, wanted = cfg.data, cfg.embed.frequency_texts
    skips, short, out = SkipLog(), 0, SplitTexts()
    for text in iter_texts(d.source, d.text_field, skips, d.hub_split):
        split = split_of(text, d.val_per_mille, d.test_per_mille)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if split == "train":
            if not wanted or len(out.train) < wanted:
                out.train.append(ids)
            continue
        if len(ids) < 2:
            short += 1
            continue
        target = out.test if split == "test" else out.val
        if len(target) < (d.test_texts if split == "test" else d.val_texts):
            target.append(ids[: d.max_tokens])
    out.report = (f"{len(out.test)} test / {len(out.val)} validation texts (<= {d.max_tokens} tokens each), "
                  f"{len(out.train)} training texts for token frequencies, from {d.source}; "
                  f"passed over {short} texts under 2 tokens; {skips.summary()}")
    if not out.test or not out.val:
        raise ConfigError(f"data.source={d.source!r} gave {len(out.test)} test and {len(out.val)} validation texts "
                          f"(data.test_per_mille={d.test_per_mille}, data.val_per_mille={d.val_per_mille}); "
                          f"both splits need at least one text: {out.report}")
    return out
