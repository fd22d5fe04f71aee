"""Global batch arithmetic and launcher checks (no model, no processes)."""

import pytest

from lightning_compress.config import ConfigError, load_config
from lightning_compress.distributed import batch_plan, check_launcher


@pytest.mark.parametrize(
    "global_batch, micro, world, expected",
    [(128, 0, 1, (128, 1)), (128, 0, 8, (16, 1)), (128, 16, 1, (16, 8)), (128, 16, 8, (16, 1)), (128, 4, 8, (4, 4))],
)
def test_global_batch_is_kept_at_every_world_size(global_batch, micro, world, expected):
    per_device, accumulate = batch_plan(global_batch, micro, world)
    assert (per_device, accumulate) == expected
    assert per_device * accumulate * world == global_batch


def test_global_batch_that_cannot_be_split_is_refused():
    with pytest.raises(ConfigError, match="does not split evenly over 3"):
        batch_plan(8, 0, 3)
    with pytest.raises(ConfigError, match="not a multiple of data.micro_batch_size=3"):
        batch_plan(8, 3, 1)


def test_accumulation_is_derived_not_configured():
    with pytest.raises(ConfigError, match="micro_batch_size"):
        load_config(None, ["trainer.accumulate_grad_batches=4"])


TORCHRUN_2x4 = {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4", "RANK": "0"}
SLURM_2x4 = {"SLURM_NTASKS": "8", "SLURM_NNODES": "2", "SLURM_JOB_NAME": "train"}


@pytest.mark.parametrize("env", [TORCHRUN_2x4, SLURM_2x4], ids=["torchrun", "slurm"])
def test_launcher_matching_config_passes(env):
    check_launcher({"devices": 4, "num_nodes": 2}, env)
    check_launcher({"devices": "auto", "num_nodes": 2}, env)


def test_torchrun_disagreeing_devices_is_refused():
    with pytest.raises(ConfigError, match=r"trainer.devices=8 but torchrun started 4 processes"):
        check_launcher({"devices": 8, "num_nodes": 1}, TORCHRUN_2x4)
    with pytest.raises(ConfigError, match=r"WORLD_SIZE is 8; set trainer.num_nodes=2"):
        check_launcher({"devices": 4, "num_nodes": 1}, TORCHRUN_2x4)


def test_slurm_disagreeing_nodes_or_tasks_is_refused():
    with pytest.raises(ConfigError, match=r"trainer.num_nodes=4 but the SLURM allocation has 2 nodes"):
        check_launcher({"devices": 4, "num_nodes": 4}, SLURM_2x4)
    with pytest.raises(ConfigError, match=r"SLURM started 8 tasks"):
        check_launcher({"devices": [0, 1], "num_nodes": 2}, SLURM_2x4)


def test_several_nodes_without_a_launcher_is_refused():
    with pytest.raises(ConfigError, match="no torchrun or SLURM environment"):
        check_launcher({"devices": 8, "num_nodes": 4}, {})
    check_launcher({"devices": 2, "num_nodes": 1}, {})  # one node: Lightning starts the processes itself


def test_fsdp_shards_decoder_blocks_and_refuses_lora(tiny_backbone_session):
    from lightning.pytorch.strategies import FSDPStrategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    from lightning_compress.tasks.prompt.train import fsdp_strategy

    strategy = fsdp_strategy(tiny_backbone_session.decoder, "mlp_free")
    assert isinstance(strategy, FSDPStrategy) and strategy.kwargs["use_orig_params"]
    policy = strategy.kwargs["auto_wrap_policy"]
    block = tiny_backbone_session.decoder.model.layers[0]
    assert isinstance(block, LlamaDecoderLayer) and policy(block, recurse=False, nonwrapped_numel=0)
    with pytest.raises(ConfigError, match="LoRA encoders share the decoder's weight storage"):
        fsdp_strategy(tiny_backbone_session.decoder, "lora_mlp_free")
