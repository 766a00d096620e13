#!/usr/bin/env bash
# One node: NGPU training processes (default: every visible GPU, or 2 processes on a CPU-only machine).
#   NGPU=8 launch/run_local.sh recipes/lst_1b.yaml run_dir=runs/lst_1b [key=value ...]
# Relaunching the same command resumes from the run's latest complete checkpoint. A dead or failed worker makes
# torchrun restart the group, which resumes from that checkpoint, up to MAX_RESTARTS times (default 3).
set -euo pipefail
PYTHON=${PYTHON:-python}
NGPU=${NGPU:-$("$PYTHON" -c "import torch; print(torch.cuda.device_count() or 2)")}
# Once, before the ranks: a bad path would otherwise print on every rank and every torchrun restart.
"$PYTHON" -m lst_train train --check "$@" >/dev/null
exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" --max-restarts="${MAX_RESTARTS:-3}" \
  -m lst_train train "$@"
