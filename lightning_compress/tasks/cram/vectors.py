"""The vectors of a cram run, in one file (`vectors.pt` in the run folder), and
`lcompress cram-decode FILE`, which regenerates the texts from them.

The file is a torch file of tensors and plain data (read back with weights_only=True):
format, the model's identity (source, weight fingerprint, dtype), the first token each text
is decoded from (BOS, or the text's first token without one), the number of tokens to
generate, a sha256 of each text's token ids (so decoding can say whether it got the text
back without the file holding the text) and the vectors [texts, k, d].
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ...atomic import atomic_torch_save
from ...checkpoint_io import CheckpointError, safe_torch_load

FORMAT = 1


def ids_sha256(ids: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def save_vectors(path: Path, model_identity: dict, entries: list[dict]) -> None:
    """entries: {text_index, first_token, predicted_tokens, sha256, vectors [k, d]} in text order."""
    entries = sorted(entries, key=lambda e: e["text_index"])
    atomic_torch_save({
        "format": FORMAT, "model": model_identity,
        "texts": [{k: v for k, v in e.items() if k not in ("vectors", "model")} for e in entries],
        "vectors": torch.stack([e["vectors"] for e in entries]) if entries else torch.empty(0),
    }, path)


def load_vectors(path: str | Path) -> list[dict]:
    """The entries of a vectors file (with `vectors` per entry), its model identity in each."""
    data = safe_torch_load(path)
    if data.get("format") != FORMAT or "model" not in data or "texts" not in data:
        raise CheckpointError(f"{path} is not a vectors file of `lcompress cram` (format {FORMAT})")
    return [{**entry, "vectors": data["vectors"][i], "model": data["model"]} for i, entry in enumerate(data["texts"])]


def decode_file(path: str | Path, source: str | None = None, dtype: str | None = None) -> list[dict]:
    """Regenerate every text of a vectors file with the model it was made with."""
    from ...backbone import load_backbone
    from .measure import greedy_tokens

    entries = load_vectors(path)
    if not entries:
        return []
    identity = entries[0]["model"]
    backbone = load_backbone(source or identity["source"], dtype or identity["dtype"])
    if backbone.fingerprint != identity["fingerprint"]:
        raise CheckpointError(
            f"{path} was crammed with model {identity['source']!r} (fingerprint {identity['fingerprint']}), but "
            f"{backbone.source!r} has fingerprint {backbone.fingerprint}: vectors only decode with their own model"
        )
    model = backbone.decoder
    if torch.cuda.is_available():
        model.cuda()
    device = next(model.parameters()).device
    out = []
    for entry in entries:
        first = torch.tensor([[entry["first_token"]]], device=device)
        tokens = greedy_tokens(model, entry["vectors"][None].to(device), first, entry["predicted_tokens"])[0].tolist()
        ids = tokens if entry["bos"] else [entry["first_token"]] + tokens
        out.append({"text_index": entry["text_index"], "text": backbone.tokenizer.decode(ids),
                    "matches": ids_sha256(ids) == entry["sha256"]})
    return out
