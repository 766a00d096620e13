"""`lst-train sweep collect`: one results.csv row per planned cell, from its RUN_DIR/metrics.jsonl."""

import csv
import os
import statistics

from lst_train.runs import finished, read_metrics
from lst_train.config.sweep import SweepConfig
from lst_train.sweeps.plan import Cell, read_plan

FIXED = ("cell", "family", "arch", "size", "budget", "seed", "status", "steps", "steps_done", "params_global",
         "params_total", "flops_per_step", "flops_planned", "flops", "tokens", "speech_hours", "global_units", "loss",
         "loss_text", "loss_speech", "val_loss", "val_loss_text", "val_loss_speech", "tokens_per_s",
         "speech_seconds_per_s")
TRAIN_LOSSES = ("loss", "loss_text", "loss_speech")
THROUGHPUTS = ("tokens_per_s", "speech_seconds_per_s")


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def cell_row(cell: Cell) -> dict:
    """Final losses (training: mean over the last 10% of logged records; validation and accuracies: the last
    evaluation), throughput (median over the records after the first, which holds start-up), FLOPs and tokens as
    the trainer counted them, and the planned FLOPs."""
    records = read_metrics(cell.run_dir)
    done = records[-1]["step"] if records else 0
    row = {"cell": cell.name, "family": cell.family, "arch": cell.arch, "size": cell.size, "budget": cell.budget,
           "seed": cell.seed,
           "status": "done" if finished(cell.run_dir) else ("partial" if records else "missing"),
           "steps": cell.steps, "steps_done": done, "params_global": cell.params["global_transformer"],
           "params_total": cell.params["total"], "flops_per_step": cell.flops_per_step,
           "flops_planned": cell.flops, "flops": records[-1]["flops_seen"] if records else 0.0,
           "tokens": records[-1]["tokens_seen"] if records else 0,
           "speech_hours": done * cell.speech_seconds_per_step / 3600, "global_units": done * cell.units_per_step}
    tail = records[-max(1, len(records) // 10):]
    for key in TRAIN_LOSSES:
        row[key] = _mean([r.get(key) for r in tail])
    steady = records[1:] or records
    for key in THROUGHPUTS:
        row[key] = statistics.median(r[key] for r in steady) if steady else None
    for record in records:
        row |= {k: v for k, v in record.items() if k.startswith(("eval/", "val_loss"))}
    return row


def write_csv(rows: list[dict], path: str) -> None:
    evals = sorted({k for row in rows for k in row if k.startswith("eval/")})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*FIXED, *evals], restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def read_csv(path: str) -> list[dict]:
    """results.csv with numbers as floats and empty cells as None."""
    def value(text: str):
        if text == "":
            return None
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def collect(sweep: SweepConfig) -> list[dict]:
    """Rows of every planned cell (finished or not), also written to OUT_DIR/results.csv."""
    rows = [cell_row(cell) for cell in read_plan(sweep.out_dir)]
    write_csv(rows, os.path.join(sweep.out_dir, "results.csv"))
    return rows
