#!/bin/bash
# One node, every GPU (or N CPU processes with gloo): torchrun in standalone mode.
#
#   scripts/launch_local.sh configs/llama-1b.toml data.shards=data/shards data.tokenizer=data/tokenizer
#   NPROC=2 scripts/launch_local.sh configs/tiny-cpu.toml parallel.dp_shard=2     # two CPU processes
#   MAX_RESTARTS=3 scripts/launch_local.sh configs/llama-1b.toml                    # survive worker failures
#
# Arguments: the TOML config, then key=value overrides. resume=true continues from the newest
# checkpoint in the run directory (from scratch when there is none), also after torchrun restarts
# (MAX_RESTARTS, default 0: a failed or hung worker, after parallel.collective_timeout_s, restarts
# the whole job, which resumes from the newest complete checkpoint).
set -euo pipefail

CONFIG=${1:?usage: scripts/launch_local.sh CONFIG.toml [key=value ...]}
shift
if [[ -z "${NPROC:-}" ]]; then
    NPROC=$(python -c "import torch; print(torch.cuda.device_count() or 1)")
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1

exec torchrun --standalone --nproc-per-node="$NPROC" --max-restarts="${MAX_RESTARTS:-0}" \
    -m murmur.train --config "$CONFIG" resume=true "$@"
