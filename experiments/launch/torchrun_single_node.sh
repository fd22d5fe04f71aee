#!/usr/bin/env bash
# One node, several GPUs (or CPU processes): DDP through torchrun.
#   GPUS=8 experiments/launch/torchrun_single_node.sh experiments/prompt/aoc_paper.yaml [key=value ...]
# On CPU:  GPUS=2 experiments/launch/torchrun_single_node.sh experiments/prompt/aoc.yaml trainer.accelerator=cpu
# data.batch_size stays the global batch: each of the GPUS processes gets batch_size / GPUS.
# resume=auto: a run of the same name with a last.ckpt continues where it stopped.
set -euo pipefail
CONFIG=${1:?usage: GPUS=N $0 CONFIG [key=value ...]}
shift
GPUS=${GPUS:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
exec torchrun --standalone --nproc_per_node="$GPUS" -m lightning_compress.cli train "$CONFIG" \
    trainer.devices="$GPUS" trainer.num_nodes=1 trainer.strategy="${STRATEGY:-ddp}" resume="${RESUME:-auto}" "$@"
