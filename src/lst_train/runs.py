"""The run directory's layout, read by everything that looks at a run (export, evaluation, sweeps, the demo):
RUN_DIR/config.yaml (the resolved config), metrics.jsonl (one record per logged step), tb/ (TensorBoard),
checkpoints/step-N/ (DCP; complete once its .metadata is written), checkpoints/abandoned-TIME-to-N/step-M/ (the
checkpoints newer than N when the run rolled back to step N: never listed as the run's), rolled_back.json (the step
of the last roll-back), diverged.json (the step where training.max_bad_steps stopped the run: it is not continued
while this file exists), finished.json (written when the run reached its end: its last step and FLOPs; a run stopped
early by stop_at or preemption has none)."""

import json
import os
import re

CHECKPOINTS = "checkpoints"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
FINISHED = "finished.json"
ROLLBACK = "rolled_back.json"
DIVERGED = "diverged.json"


def checkpoint_folder(run_dir: str) -> str:
    return os.path.join(run_dir, CHECKPOINTS)


def complete_steps(run_dir: str) -> list[int]:
    """Steps with a complete checkpoint, newest first."""
    folder = checkpoint_folder(run_dir)
    if not os.path.isdir(folder):
        return []
    steps = [int(m.group(1)) for name in os.listdir(folder) if (m := re.fullmatch(r"step-(\d+)", name))
             and os.path.isfile(os.path.join(folder, name, ".metadata"))]
    return sorted(steps, reverse=True)


def read_metrics(run_dir: str) -> list[dict]:
    """The records of a run by step, the last record of a step winning (a resumed run appends)."""
    path = os.path.join(run_dir, METRICS)
    if not os.path.isfile(path):
        return []
    by_step = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def write_finished(run_dir: str, step: int, flops: float) -> None:
    with open(os.path.join(run_dir, FINISHED), "w") as f:
        json.dump({"step": step, "flops": flops}, f)


def finished(run_dir: str) -> dict | None:
    """{"step", "flops"} of a run that reached its end, else None."""
    path = os.path.join(run_dir, FINISHED)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)
