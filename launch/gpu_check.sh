#!/usr/bin/env bash
# `make gpu-check`: the GPU checks in one script, for a CUDA machine where torch is preinstalled and nothing can be
# downloaded. Installs the other pins from gpu_wheels/ (made by `make gpu-wheels` where the registry is reachable)
# into .gpu_site/, then runs four stages, each under its own time limit so one hang cannot eat the rest (~9 min):
# the GPU tests, bench/kernels.py, 1B training throughput (LST and baseline; published mix and speech only: 85 s
# each, as a 1B LST's first steps compiled for ~80 s on an H200, torch 2.11, 2026-11-28), and Mimi's on-the-fly
# encoding against the LST's speech-seconds per second. Logs and a summary go to $OUT.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu_check_out}
SITE=$PWD/.gpu_site
mkdir -p "$OUT" "$SITE"
if compgen -G "gpu_wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target "$SITE" gpu_wheels/*.whl || exit 1
fi
ln -sfn "$PWD/kernels" "$SITE/lst_kernels"  # the package's kernels/ folder, importable as lst_kernels
export PYTHONUNBUFFERED=1  # a stage cut by its time limit keeps every line it printed
export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))" | tee "$OUT/summary.txt"

stage() {  # stage NAME LIMIT_S COMMAND...: run with a time limit, keep its log, add its tail to the summary
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "=== $name (limit ${limit} s)"
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    tail -n 25 "$OUT/$name.log"
    printf '=== %s: rc=%s in %s s%s\n' "$name" "$rc" "$((SECONDS - start))" \
        "$([ "$rc" = 124 ] && echo ' (time limit)')" | tee -a "$OUT/summary.txt"
    tail -n 12 "$OUT/$name.log" >>"$OUT/summary.txt"
}

stage gpu-tests 100 "$PY" -m pytest -v -p no:cacheprovider --timeout 90 --durations=8 tests/kernels/test_kernels.py \
    tests/test_gpu.py -k "gpu"
# The kernel matrix's core (the full one: `python bench/kernels.py`, a few minutes).
stage kernels 60 "$PY" bench/kernels.py --tokens 16384 --slots 2 --partitions static --repeats 2
stage throughput 350 "$PY" bench/train_throughput.py --steps 20 --run-timeout 85 --out "$OUT/throughput.json"
stage mimi 30 "$PY" bench/mimi_encode.py --throughput "$OUT/throughput.json"
echo "summary: $OUT/summary.txt"
