#!/usr/bin/env bash
# Several nodes, c10d rendezvous: run the same command on every node.
#   NNODES=4 NODE_RANK=0 MASTER_ADDR=node0 MASTER_PORT=29500 NGPU=8 \
#     launch/run_multinode.sh recipes/lst_1b.yaml run_dir=/shared/runs/lst_1b
# run_dir must be on storage every node sees (checkpoints are written by all ranks). A failed worker restarts
# every node's group from the latest checkpoint, up to MAX_RESTARTS times (default 3).
set -euo pipefail
PYTHON=${PYTHON:-python}
: "${NNODES:?set NNODES}" "${NODE_RANK:?set NODE_RANK}" "${MASTER_ADDR:?set MASTER_ADDR}"
MASTER_PORT=${MASTER_PORT:-29500}
NGPU=${NGPU:-$("$PYTHON" -c "import torch; print(torch.cuda.device_count() or 1)")}
# Once, before the ranks: a bad path would otherwise print on every rank and every torchrun restart.
"$PYTHON" -m lst_train train --check "$@" >/dev/null
exec "$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$NGPU" \
  --max-restarts="${MAX_RESTARTS:-3}" --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="${RDZV_ID:-lst_train}" \
  -m lst_train train "$@"
