"""World size, global batch and the launcher's environment.

`data.batch_size` is the global batch: prompts per optimiser step summed over every device
and node. Each device runs micro-batches of `data.micro_batch_size` prompts (0: as many as
fit one step without accumulation) and gradients accumulate over

    accumulate = batch_size / (micro_batch_size * world_size)

micro-batches, so moving a config from 1 GPU to 32 leaves the optimisation unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta

import torch
import torch.distributed as dist

from .config import ConfigError


def batch_plan(global_batch: int, micro_batch: int, world_size: int) -> tuple[int, int]:
    """(micro-batch per device, gradient accumulation steps) for a global batch."""
    if micro_batch <= 0:
        if global_batch % world_size:
            raise ConfigError(
                f"data.batch_size={global_batch} (global) does not split evenly over {world_size} processes; "
                f"choose a multiple of {world_size} or set data.micro_batch_size"
            )
        return global_batch // world_size, 1
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise ConfigError(
            f"data.batch_size={global_batch} (global) is not a multiple of data.micro_batch_size={micro_batch} x "
            f"{world_size} processes = {per_step}; gradients could not accumulate to exactly the global batch"
        )
    return micro_batch, global_batch // per_step


def _count(devices) -> int | None:
    """Processes per node that `trainer.devices` asks for, or None when Lightning decides."""
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    return None  # "auto" or -1


def launcher_world(env: Mapping | None = None) -> tuple[int, int, int]:
    """(global rank, world size, processes per node) that torchrun or srun started this
    process with; (0, 1, 1) when it was started alone."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        world = int(env["WORLD_SIZE"])
        return int(env["RANK"]), world, int(env.get("LOCAL_WORLD_SIZE", world))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        world = int(env["SLURM_NTASKS"])
        return int(env["SLURM_PROCID"]), world, int(env.get("SLURM_NTASKS_PER_NODE", world))
    return 0, 1, 1


def check_launcher(trainer_kwargs: Mapping, env: Mapping | None = None) -> None:
    """Refuse a trainer.devices / trainer.num_nodes that disagrees with the processes the
    launcher (torchrun or SLURM) started: such a run would hang at the first collective
    or silently train on part of the machines."""
    env = os.environ if env is None else env
    devices = _count(trainer_kwargs.get("devices", "auto"))
    nodes = int(trainer_kwargs.get("num_nodes", 1) or 1)
    if "TORCHELASTIC_RUN_ID" in env and "WORLD_SIZE" in env:
        world, local = int(env["WORLD_SIZE"]), int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"]))
        if devices is not None and devices != local:
            raise ConfigError(
                f"trainer.devices={devices} but torchrun started {local} processes on this node "
                f"(--nproc_per_node); set trainer.devices={local}"
            )
        if devices is not None and devices * nodes != world:
            raise ConfigError(
                f"trainer.devices={devices} x trainer.num_nodes={nodes} = {devices * nodes} processes, but torchrun's "
                f"WORLD_SIZE is {world}; set trainer.num_nodes={world // max(1, devices)} (torchrun --nnodes)"
            )
        return
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        tasks, slurm_nodes = int(env["SLURM_NTASKS"]), int(env.get("SLURM_NNODES", 1))
        if nodes != slurm_nodes:
            raise ConfigError(
                f"trainer.num_nodes={nodes} but the SLURM allocation has {slurm_nodes} nodes (#SBATCH --nodes); "
                f"set trainer.num_nodes={slurm_nodes}"
            )
        if devices is not None and devices * nodes != tasks:
            raise ConfigError(
                f"trainer.devices={devices} x trainer.num_nodes={nodes} = {devices * nodes} processes, but SLURM "
                f"started {tasks} tasks; set #SBATCH --ntasks-per-node={devices} or trainer.devices={tasks // nodes}"
            )
        return
    if nodes > 1:
        raise ConfigError(
            f"trainer.num_nodes={nodes} but no torchrun or SLURM environment was found: start the same command on "
            "every node with torchrun or srun (see experiments/launch/)"
        )


def open_process_group(timeout_minutes: int, accelerator: str | None) -> None:
    """Under torchrun with more than one process, open the default process group before
    anything is built, with the configured timeout, so the ranks can agree on a failure
    before training (`all_ranks_succeeded`). Lightning's DDP setup reuses an open group.
    Under srun alone Lightning opens it (from SLURM's variables) at the start of fit."""
    if dist.is_initialized() or "TORCHELASTIC_RUN_ID" not in os.environ or launcher_world()[1] == 1:
        return
    rank, world, _ = launcher_world()
    gpu = accelerator not in ("cpu",) and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if gpu else "gloo", rank=rank, world_size=world,
                            timeout=timedelta(minutes=timeout_minutes))


def all_ranks_succeeded(ok: bool) -> bool:
    """Every rank states whether its part of a stage succeeded; all get False if any failed,
    so a failure on one rank stops all of them at the same point instead of leaving the others
    waiting at the next collective. Without a process group: `ok` itself."""
    if not (dist.is_available() and dist.is_initialized()):
        return ok
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    failed = torch.tensor([0 if ok else 1], device=device)
    dist.all_reduce(failed, op=dist.ReduceOp.MAX)
    return int(failed.item()) == 0


class FailedOnAnotherRank(RuntimeError):
    """Raised on the ranks that did not fail themselves."""


def close_process_group() -> None:
    """At the end of a command that succeeded on every rank: wait for all, then tear the group
    down, so no rank exits while another still talks to it (gloo aborts a process whose
    threads are still attached at exit: "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj) -> list:
    """`obj` of every rank, in rank order ([obj] outside a process group): for values that
    are not tensors of one shape, such as the texts a validation regenerated."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
