#!/usr/bin/env bash
# Multi-process / multi-node testing on PyTorch distributed (torchrun) through mmengine.
# Usage: bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]
# NPROC processes per node: one per GPU (NCCL), or CPU processes (gloo) on a machine without CUDA.
# Streaming evaluation (--streaming) gives every process whole videos (VideoDistributedSampler)
# and gathers the results in the one-process order: N processes give the one-process metrics.
# Multi-node: NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 PORT=29500 bash tools/dist_test.sh CONFIG CKPT 8
# (run the same command on every node with its NODE_RANK). PYTHON selects the interpreter.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
PYTHONPATH="$ROOT":${PYTHONPATH:-} \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
