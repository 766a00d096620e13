"""The throughput and Mimi stages of `make gpu-check` keep running (device time is scarce: a broken script would
waste a GPU session): bench/train_throughput.py on the debug recipes and bench/mimi_encode.py on this machine's
CPU, tiny, through the same command lines and JSON hand-over as launch/gpu_check.sh."""

import json
import subprocess
import sys

from helpers import REPO, RECIPES


def test_throughput_table_then_mimi_against_its_speech_seconds(tmp_path):
    out = tmp_path / "throughput.json"
    result = subprocess.run(
        [sys.executable, "bench/train_throughput.py", "--recipes", str(RECIPES / "debug_cpu.yaml"),
         str(RECIPES / "debug_cpu_baseline.yaml"), "--mixes", "speech", "--steps", "4", "--run-timeout", "120",
         "--out", str(out), "training.device=cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [(r["arch"], r["mix"], r["status"], r["steps"]) for r in rows] == [("lst", "speech", "ok", 4),
                                                                            ("baseline", "speech", "ok", 4)]
    assert all(r["speech_seconds_per_s"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert "speech: LST / baseline speech-seconds per second = " in result.stdout

    result = subprocess.run(
        [sys.executable, "bench/mimi_encode.py", "--device", "cpu", "--batch-size", "1", "--seconds", "1",
         "--batches", "1", "--throughput", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "s of audio encoded per second" in result.stdout
    assert "speech-seconds/s (speech only): Mimi encodes" in result.stdout
