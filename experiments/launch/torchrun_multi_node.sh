#!/usr/bin/env bash
# Several nodes: run this same line on every node, changing only NODE_RANK.
#   NNODES=4 NODE_RANK=0 MASTER_ADDR=node0 GPUS=8 experiments/launch/torchrun_multi_node.sh experiments/prompt/aoc_paper.yaml
#   NNODES=4 NODE_RANK=1 MASTER_ADDR=node0 GPUS=8 experiments/launch/torchrun_multi_node.sh experiments/prompt/aoc_paper.yaml
#   ...
# Every node must see the same output_dir (a shared filesystem): rank 0 writes logs and
# checkpoints there and every rank reads the checkpoint back on resume.
set -euo pipefail
CONFIG=${1:?usage: NNODES=N NODE_RANK=K MASTER_ADDR=HOST GPUS=G $0 CONFIG [key=value ...]}
shift
: "${NNODES:?set NNODES}" "${NODE_RANK:?set NODE_RANK}" "${MASTER_ADDR:?set MASTER_ADDR}"
MASTER_PORT=${MASTER_PORT:-29500}
GPUS=${GPUS:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}
exec torchrun --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$GPUS" \
    --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" \
    -m lightning_compress.cli train "$CONFIG" \
    trainer.devices="$GPUS" trainer.num_nodes="$NNODES" trainer.strategy="${STRATEGY:-ddp}" resume="${RESUME:-auto}" "$@"
