"""`lst-train sweep launch`: run the planned cells locally (one process or torchrun each) or submit one sbatch per
cell. A cell whose run wrote RUN_DIR/finished.json is finished and skipped; any other cell is (re)started with
resume=auto, so an interrupted cell continues from its latest checkpoint."""

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lst_train.config import ConfigError
from lst_train.config.sweep import SweepConfig
from lst_train.sweeps.plan import Cell, Plan
from lst_train.sweeps.slurm import submit, wait_for_jobs
from lst_train.runs import complete_steps, finished

EXECUTORS = ("local", "torchrun", "slurm")
TRAINER_LOG = re.compile(r" lst_train\.\w+: ")


@dataclass
class CellLaunch:
    cell: Cell
    state: str
    """'finished' (skipped), 'resume' (from `start`), 'new', then 'done' or 'failed' once run, or (slurm)
    'submitted' / 'queued'."""
    start: int = 0
    """Step the cell continues from."""


def cell_state(cell: Cell) -> CellLaunch:
    steps = complete_steps(cell.run_dir)
    end = finished(cell.run_dir)
    if end is not None:
        return CellLaunch(cell, "finished", end["step"])
    return CellLaunch(cell, "resume", steps[0]) if steps else CellLaunch(cell, "new")


def train_command(sweep: SweepConfig, executor: str, config: str) -> list[str]:
    if executor == "local":
        return [sys.executable, "-m", "lst_train", "train", config]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={sweep.ranks}",
            "-m", "lst_train", "train", config]


def _run_cell(sweep: SweepConfig, executor: str, launch: CellLaunch, out, stream: bool) -> CellLaunch:
    """Run one cell, its output into RUN_DIR/launch.log; with `stream`, the trainer's own log lines (start, resume,
    steps, evaluations; not library warnings) also go to `out`, prefixed with the cell."""
    os.makedirs(launch.cell.run_dir, exist_ok=True)
    log = os.path.join(launch.cell.run_dir, "launch.log")
    with open(log, "a") as f:
        process = subprocess.Popen(train_command(sweep, executor, launch.cell.config), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout:
            f.write(line)
            if stream and TRAINER_LOG.search(line):
                out(f"{launch.cell.name}: {line.rstrip()}")
        code = process.wait()
    launch.state = "done" if code == 0 else "failed"
    out(f"{launch.cell.name}: {launch.state}" + ("" if code == 0 else f" (exit {code}; see {log})"))
    return launch


def launch(plan: Plan, executor: str, dry_run: bool = False, parallel: int = 1, out=print,
           stream: bool = False, wait: bool = False) -> list[CellLaunch]:
    """Run (or submit) every unfinished cell of a written plan; returns each cell's outcome. `stream`: show the
    trainers' progress lines through `out` as they come. `wait` (slurm): return once the submitted jobs have left
    the queue, each cell 'done' if its run finished, else 'failed'."""
    sweep = plan.sweep
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: must be one of {EXECUTORS}, got {executor!r}")
    if executor == "local" and sweep.ranks > 1:
        raise ConfigError(f"ranks: the local executor runs one process per cell, got ranks={sweep.ranks}; "
                          "use --executor torchrun (or ranks: 1)")
    if parallel < 1:
        raise ConfigError(f"--parallel: must be >= 1, got {parallel}")
    launches = [cell_state(cell) for cell in plan.cells]
    for launch in launches:
        what = {"finished": "finished, skipped", "resume": f"resumes from step {launch.start}", "new": "starts"}
        out(f"{launch.cell.name}: {what[launch.state]} ({launch.cell.steps} steps)")
    todo = [launch for launch in launches if launch.state != "finished"]
    if executor == "slurm":
        jobs = submit(sweep, [launch.cell for launch in todo], dry_run, out)
        if dry_run:
            return launches
        for launch, (state, _) in zip(todo, jobs):
            launch.state = state
        if wait:
            wait_for_jobs(sweep, [job for _, job in jobs if job], out)
            for launch in todo:
                if launch.state != "failed":
                    launch.state = "done" if finished(launch.cell.run_dir) is not None else "failed"
                    out(f"{launch.cell.name}: {launch.state}" + ("" if launch.state == "done" else
                        f" (the job left the queue before the run's end; see {sweep.out_dir}/slurm)"))
    elif dry_run:
        for launch in todo:
            out(" ".join(train_command(sweep, executor, launch.cell.config)))
    else:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda launch: _run_cell(sweep, executor, launch, out, stream), todo))
    return launches
