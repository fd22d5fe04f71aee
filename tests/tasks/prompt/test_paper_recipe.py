"""Options that reproduce the papers' recipe (data.pad_to_n, model.memory_init, eos_token,
master_weights, encoder_bos) and the distillation warm start, on the tiny decoder."""

import warnings

import pytest
import torch

from lightning_compress.config import ConfigError, load_config
from lightning_compress.tasks.prompt.memory import decoder_logits
from lightning_compress.tasks.prompt.module import MLP_FADE_KEY, PromptCompressor, mlp_fade_scale

from helpers import EXPERIMENTS, SHRINK_PROMPT


def test_memory_init_normal_is_aocs_n01_and_the_default_is_embedding_scale(tiny_backbone, tiny_config):
    ours = PromptCompressor(tiny_config(), tiny_backbone).encoder.memory
    aoc = PromptCompressor(tiny_config("model.memory_init=normal"), tiny_backbone).encoder.memory
    embed_std = tiny_backbone.decoder.get_input_embeddings().weight.std().item()
    assert aoc.std().item() == pytest.approx(1.0, rel=0.3)
    assert ours.std().item() == pytest.approx(embed_std, rel=0.3)
    with pytest.raises(ConfigError, match="model.memory_init"):
        tiny_config("model.memory_init=zeros")


def test_eos_token_is_the_target_after_the_text_and_a_generation_stop(tiny_backbone, tiny_config):
    tokenizer = tiny_backbone.tokenizer
    other = next(t for t in tokenizer.all_special_tokens if t != tokenizer.eos_token)
    module = PromptCompressor(tiny_config(f"model.eos_token={other}"), tiny_backbone)
    assert module.target_eos_id == tokenizer.convert_tokens_to_ids(other) != tokenizer.eos_token_id
    assert module.target_eos_id in module.eos_token_ids and tokenizer.eos_token_id in module.eos_token_ids
    assert PromptCompressor(tiny_config("model.eos_token=5"), tiny_backbone).target_eos_id == 5
    with pytest.raises(ConfigError, match="model.eos_token='<|nope|>' is not a token"):
        PromptCompressor(tiny_config("model.eos_token=<|nope|>"), tiny_backbone)


@pytest.mark.parametrize("encoder", ["mlp_free", "lora"])
def test_bf16_decoder_keeps_fp32_master_weights_unless_asked_for_pure_bf16(tiny_backbone, tiny_config, sample_ids, encoder):
    tiny_backbone.decoder.to(torch.bfloat16)
    rotary = tiny_backbone.decoder.model.rotary_emb
    rotary.inv_freq.data = rotary.inv_freq.data.float()  # as from_pretrained(dtype=bfloat16) keeps it
    rotary_dtypes = [b.dtype for b in rotary.buffers()]
    mixed = PromptCompressor(tiny_config(f"model.encoder.name={encoder}"), tiny_backbone)
    trained = [p for p in mixed.parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    assert all(p.dtype == torch.bfloat16 for p in mixed.decoder.parameters())
    loss, _ = mixed.loss_and_accuracy(sample_ids)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in [mixed.encoder.memory])
    pure = PromptCompressor(tiny_config(f"model.encoder.name={encoder}", "model.master_weights=decoder"), tiny_backbone)
    assert all(p.dtype == torch.bfloat16 for p in pure.parameters() if p.requires_grad)
    assert [b.dtype for b in rotary.buffers()] == rotary_dtypes  # shared by encoder and decoder: never cast


def test_distill_loss_is_zero_for_the_full_encoder_and_the_warm_start_lowers_it(tiny_backbone, tiny_config, sample_ids):
    full = PromptCompressor(tiny_config("model.encoder.name=full"), tiny_backbone)
    assert full.distill_loss(sample_ids).item() == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    module = PromptCompressor(tiny_config("model.encoder.name=mlp_free"), tiny_backbone)
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        loss = module.distill_loss(sample_ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 1e-3 and losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in module.decoder.parameters()), "the teacher must not be trained"


def test_transformers_cache_keyword_raises_no_deprecation_warning(tiny_backbone, tiny_config, sample_ids):
    module = PromptCompressor(tiny_config(), tiny_backbone)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        memory = module.compress(sample_ids)
        decoder_logits(module.decoder, memory, sample_ids)
        module.regenerate_memory(memory)


def test_paper_config_is_the_papers_recipe():
    cfg = load_config(EXPERIMENTS / "prompt" / "aoc_paper.yaml")
    assert (cfg.model.position_layout, cfg.model.encoder_bos, cfg.model.memory_init) == ("paper", False, "normal")
    assert (cfg.model.eos_token, cfg.model.master_weights, cfg.data.pad_to_n) == ("<|end_of_text|>", "decoder", True)
    assert (cfg.data.batch_size, cfg.trainer.max_steps, cfg.model.lr) == (16, 18750, 5e-4)
    assert cfg.model.distill_steps == 0


def test_value_gate_starts_the_memory_harmless_and_opens_with_training(tiny_backbone, tiny_config, sample_ids):
    module = PromptCompressor(tiny_config("model.value_gate=true"), tiny_backbone)
    memory = module.compress(sample_ids)
    assert all(float(v.abs().max()) == 0.0 for v in memory.values) and any(float(k.abs().max()) > 0 for k in memory.keys)
    loss, _ = module.loss_and_accuracy(sample_ids)
    loss.backward()
    gate = module.encoder.value_gate
    assert gate.grad is not None and float(gate.grad.abs().max()) > 0
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [g["initial_lr"] for g in groups] == [module.cfg.model.lr, 10 * module.cfg.model.lr] and groups[1]["params"] == [gate]


def test_memory_from_text_puts_the_prompts_words_into_the_slots(tiny_backbone, tiny_config, sample_ids):
    module = PromptCompressor(tiny_config("model.memory_from_text=true"), tiny_backbone)
    encoder, ids = module.encoder, module.encoder_input(sample_ids)
    slots = encoder.embed(ids, text_start=1)[:, ids.shape[1]:]
    chunks = encoder.embed_tokens(sample_ids).view(1, encoder.memory_tokens, -1, slots.shape[-1]).mean(2)
    torch.testing.assert_close(slots, encoder.memory[None] + chunks)


def test_a_run_with_a_distillation_warm_start_and_weight_trains_through_the_switch(tiny_backbone, tiny_config, tmp_path):
    from test_prompt_training import _fit

    cfg = tiny_config("model.distill_steps=2", "model.distill_weight=0.5")
    trainer = _fit(PromptCompressor(cfg, tiny_backbone), cfg, tmp_path, steps=4)
    assert trainer.global_step == 4 and {"train/loss", "train/distill_loss"} <= set(trainer.callback_metrics)


def test_mlp_fade_starts_as_the_full_encoder_and_ends_as_aocs(tiny_backbone, tiny_config, sample_ids, tmp_path):
    faded = PromptCompressor(tiny_config("model.mlp_fade_steps=2", "trainer.max_steps=4"), tiny_backbone)
    torch.manual_seed(0)
    full = PromptCompressor(tiny_config("model.encoder.name=full"), tiny_backbone)
    faded.encoder.memory.data.copy_(full.encoder.memory.data)
    for a, b in zip(faded.compress(sample_ids).keys, full.compress(sample_ids).keys):
        torch.testing.assert_close(a, b)  # scale 1: the full encoder
    # The fading MLPs are the decoder's pretrained ones, frozen (a trained one would grow as 1/s
    # and the encoder would lean on it until it is gone): the optimiser never sees them and a
    # mid-fade checkpoint holds only their scale.
    assert all(not p.requires_grad for mlp in faded.encoder.fading_mlps() for p in mlp.parameters())
    trained = {id(p) for group in faded.configure_optimizers()["optimizer"].param_groups for p in group["params"]}
    assert not any(id(p) in trained for mlp in faded.encoder.fading_mlps() for p in mlp.parameters())
    mid = faded.trainable_state_dict()
    assert MLP_FADE_KEY in mid and not any(".mlp." in k for k in mid)
    # A mid-fade checkpoint written while the fading MLPs were still trained holds their weights:
    # it still loads, weights included.
    older = {**mid, **{k: v + 1 for k, v in faded.state_dict().items() if ".mlp.mlp." in k}}
    resumed = PromptCompressor(tiny_config("model.mlp_fade_steps=2", "trainer.max_steps=4"), tiny_backbone)
    resumed.load_trainable_state(older)
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in older.items() if ".mlp.mlp." in k)
    faded.encoder.set_mlp_scale(0.0)
    aoc = PromptCompressor(tiny_config(), tiny_backbone)
    assert set(faded.trainable_state_dict()) == set(aoc.trainable_state_dict())  # AOC's layout, no MLP
    aoc.load_trainable_state(faded.trainable_state_dict())
    # A fresh fading module loads a post-fade checkpoint as the MLP-free encoder, a mid-fade one with its scale.
    reloaded = PromptCompressor(tiny_config("model.mlp_fade_steps=2", "trainer.max_steps=4"), tiny_backbone)
    reloaded.load_trainable_state(faded.trainable_state_dict())
    assert not reloaded.encoder.fading_mlps()
    with pytest.raises(ConfigError, match="keeps its MLPs"):
        tiny_config("model.encoder.name=full", "model.mlp_fade_steps=2")


def test_mlp_fade_run_keeps_best_checkpoint_from_after_the_fade(tmp_path):
    from lightning_compress.cli import main

    overrides = [o for o in SHRINK_PROMPT if not o.startswith(("trainer.max_steps", "trainer.val_check"))]
    assert main(["train", str(EXPERIMENTS / "prompt" / "aoc.yaml"), f"output_dir={tmp_path}", "name=fade", *overrides,
                 "model.mlp_fade_steps=2", "trainer.max_steps=4", "trainer.val_check_interval=1"]) == 0
    best = torch.load(tmp_path / "fade" / "version_0" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["global_step"] >= 2 and not any(".mlp." in k for k in best["state_dict"])
    assert MLP_FADE_KEY not in best["state_dict"]  # not a mid-fade encoder


def test_the_first_validation_that_may_become_best_sees_no_mlp():
    # Validation after `fade` batches follows the batch of step fade - 1.
    assert [mlp_fade_scale(step, 4) for step in range(5)] == [0.75, 0.5, 0.25, 0.0, 0.0]


def _prompt_lengths_seen(cfg, backbone, tmp_path, steps: int):
    """(module, prompt tokens the encoder read at each training step, at each validation batch)
    after `steps` steps of fitting (the encoder's BOS not counted)."""
    from test_prompt_training import _fit

    module = PromptCompressor(cfg, backbone)
    widths = []
    module.encoder.register_forward_pre_hook(lambda encoder, args: widths.append((module.training, args[0].shape[1])))
    _fit(module, cfg, tmp_path, steps=steps)
    bos = int(cfg.model.encoder_bos)
    return (module, [w - bos for training, w in widths if training], [w - bos for training, w in widths if not training])


def test_curriculum_trains_on_short_prompts_first(tiny_backbone, tiny_config, tmp_path):
    """model.curriculum_steps: k = memory_tokens at step 0, growing to n, then n."""
    cfg = tiny_config("model.curriculum_steps=4", "trainer.max_steps=6")
    m, n = cfg.model.memory_tokens, cfg.data.n_tokens
    module, trained, validated = _prompt_lengths_seen(cfg, tiny_backbone, tmp_path, steps=6)
    assert trained == [m + (n - m) * step // 4 for step in range(4)] + [n, n]
    assert trained[0] == m < n
    with pytest.raises(ConfigError, match="model.curriculum_steps"):
        tiny_config("model.curriculum_steps=6", "trainer.max_steps=6")


def test_mixed_lengths_draw_each_step_from_memory_tokens_to_n(tiny_backbone, tiny_config, tmp_path):
    """model.mixed_lengths: every step trains on k in [m, n], the same k for the same step."""
    cfg = tiny_config("model.mixed_lengths=true", "trainer.max_steps=12")
    m, n = cfg.model.memory_tokens, cfg.data.n_tokens
    module, trained, validated = _prompt_lengths_seen(cfg, tiny_backbone, tmp_path, steps=12)
    assert len(trained) == 12 and all(m <= k <= n for k in trained) and len(set(trained)) > 1
    assert set(validated) <= {n}  # validation compresses all n
    assert [module.curriculum_length(n, step) for step in range(12)] == trained
    with pytest.raises(ConfigError, match="model.mixed_lengths"):
        tiny_config("model.mixed_lengths=true", "model.curriculum_steps=4", "trainer.max_steps=6")


def test_a_teacher_pulls_the_memory_toward_its_own_and_stays_out_of_training_and_checkpoints(
        tiny_backbone, tiny_config, tmp_path, sample_ids):
    from test_prompt_training import _fit

    # A teacher run (the `full` encoder, a few steps), then an MLP-free student distilled from it.
    teacher_cfg = tiny_config("model.encoder.name=full", "model.lr=1e-2")
    teacher_path = tmp_path / "teacher.ckpt"
    _fit(PromptCompressor(teacher_cfg, tiny_backbone), teacher_cfg, tmp_path / "teacher", steps=3).save_checkpoint(teacher_path)

    cfg = tiny_config("model.encoder.name=mlp_free", "model.lr=1e-2", f"model.teacher={teacher_path}",
                      "model.teacher_weight=10")
    student = PromptCompressor(cfg, tiny_backbone)
    student.load_teacher()
    with torch.no_grad():
        before = student.teacher_loss(sample_ids, student.compress(sample_ids)).item()
    teacher_weights = {k: v.clone() for k, v in student._teacher.encoder.state_dict().items()}
    trainer = _fit(student, cfg, tmp_path / "student", steps=15)
    with torch.no_grad():
        after = student.teacher_loss(sample_ids, student.compress(sample_ids)).item()
    assert after < 0.5 * before, (before, after)
    assert "train/teacher_loss" in trainer.callback_metrics
    assert all(torch.equal(v, teacher_weights[k]) for k, v in student._teacher.encoder.state_dict().items())
    assert not any(n.startswith("_teacher") for n, _ in student.named_parameters())
    trainer.save_checkpoint(tmp_path / "student.ckpt")
    saved = torch.load(tmp_path / "student.ckpt", map_location="cpu", weights_only=False)
    assert set(saved["state_dict"]) == set(student.trainable_state_dict())
    # A teacher of another shape, or none at the path: one clear line naming the key.
    other = PromptCompressor(tiny_config("model.encoder.name=mlp_free", f"model.teacher={teacher_path}", "model.memory_tokens=1"),
                   tiny_backbone)
    with pytest.raises(ConfigError, match=r"model.teacher=.* was trained with model.memory_tokens=3, this run has 1"):
        other.load_teacher()
    missing = tiny_config(f"model.teacher={tmp_path / 'nothing.ckpt'}")
    with pytest.raises(ConfigError, match="model.teacher=.*no such checkpoint"):
        _fit(PromptCompressor(missing, tiny_backbone), missing, tmp_path / "missing")  # loaded as training starts


@pytest.mark.parametrize("encoder", ["mlp_free", "lora"])
def test_layer_lr_decay_gives_each_block_its_learning_rate(tiny_backbone, tiny_config, encoder):
    cfg = tiny_config(f"model.encoder.name={encoder}", "model.lr=1e-2", "model.layer_lr_decay=0.5")
    module = PromptCompressor(cfg, tiny_backbone)
    optimizer = module.configure_optimizers()["optimizer"]
    lr_of = {id(p): group["initial_lr"] for group in optimizer.param_groups for p in group["params"]}
    trainable = {name: p for name, p in module.named_parameters() if p.requires_grad}
    assert set(map(id, trainable.values())) == set(lr_of)  # every trainable parameter, once
    last = module.decoder.config.num_hidden_layers - 1
    assert lr_of[id(module.encoder.memory)] == pytest.approx(1e-2)  # the slots at the full lr
    for name, param in trainable.items():
        if ".blocks.0." in name or "embed_tokens" in name:
            assert lr_of[id(param)] == pytest.approx(1e-2 * 0.5 ** last), name
        if name.startswith("encoder.last."):
            assert lr_of[id(param)] == pytest.approx(1e-2), name
    one = PromptCompressor(tiny_config(f"model.encoder.name={encoder}"), tiny_backbone).configure_optimizers()["optimizer"]
    assert len(one.param_groups) == 1
    for bad in ("0", "1.5"):
        with pytest.raises(ConfigError, match="model.layer_lr_decay must be in"):
            tiny_config(f"model.layer_lr_decay={bad}")
