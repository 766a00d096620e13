"""bench/kernels.py keeps running: its smoke mode (tiny shapes, Triton's interpreter on a CPU) goes through every
variant and prints a row for each (the GPU figures themselves come from `make gpu-check`)."""

import os
import subprocess
import sys

import torch

from helpers import REPO


def test_kernel_benchmark_smoke_run_prints_every_variant():
    env = dict(os.environ) if torch.cuda.is_available() else dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "bench/kernels.py", "--smoke", "--partitions", "static"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    seen = {(row[0], row[5]) for row in rows}
    assert seen == {("segment_pool", "triton"), ("segment_pool", "reference"),
                    *(("segment_cross_attention", v) for v in ("triton", "reference", "dense")),
                    *(("range_cross_attention", v) for v in ("triton", "triton-det", "reference", "dense"))}
    assert all(row[-1].endswith("x") for row in rows if "triton" in row)
