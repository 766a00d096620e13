"""`lst-train sweep launch`: run the planned cells locally (one process or torchrun each) or submit one sbatch per
cell. A cell whose last step has a complete checkpoint is finished and skipped; any other cell is (re)started with
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
from lst_train.runs import complete_steps, finished

EXECUTORS = ("local", "torchrun", "slurm")
TRAINER_LOG = re.compile(r" lst_train\.\w+: ")


@dataclass
class CellLaunch:
    cell: Cell
    state: str
    """'finished' (skipped), 'resume' (from `start`), 'new', then 'done' or 'failed' once run, or 'submitted'."""
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


def sbatch_script(sweep: SweepConfig, cell: Cell, template: str) -> str:
    """The template with this cell's #SBATCH lines, its config as the script's arguments and this Python."""
    slurm = sweep.slurm
    per_node = min(sweep.ranks, slurm.gpus_per_node)
    if sweep.ranks % per_node:
        raise ConfigError(f"ranks: {sweep.ranks} is not a multiple of slurm.gpus_per_node={slurm.gpus_per_node}")
    options = {"job-name": f"{sweep.name}-{cell.name}", "nodes": str(sweep.ranks // per_node),
               "gpus-per-node": str(per_node), "time": slurm.time,
               "output": os.path.join(os.path.abspath(sweep.out_dir), "slurm", "%x-%j.out")}
    options |= {k: v for k, v in (("partition", slurm.partition), ("account", slurm.account)) if v}
    lines = template.splitlines()
    last_option = max(i for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    script = []
    for i, line in enumerate(lines):
        match = re.match(r"#SBATCH --([\w-]+)=", line)
        if match and match.group(1) in options:
            line = f"#SBATCH --{match.group(1)}={options.pop(match.group(1))}"
        if line.startswith("PYTHON="):
            # The template reads its recipe and overrides from "$@": make them this cell's config.
            script.append(f"set -- {os.path.abspath(cell.config)}")
            line = f"PYTHON=${{PYTHON:-{sys.executable}}}"
        script.append(line)
        if i == last_option:
            script += [f"#SBATCH --{k}={v}" for k, v in options.items()]
    return "\n".join(script) + "\n"


def _submit(sweep: SweepConfig, launches: list[CellLaunch], dry_run: bool, out) -> None:
    if not os.path.isfile(sweep.slurm.template):
        raise ConfigError(f"slurm.template: no file {sweep.slurm.template!r} (relative to {os.getcwd()})")
    with open(sweep.slurm.template) as f:
        template = f.read()
    folder = os.path.join(sweep.out_dir, "slurm")
    os.makedirs(folder, exist_ok=True)
    for launch in launches:
        path = os.path.join(folder, f"{launch.cell.name}.sbatch")
        script = sbatch_script(sweep, launch.cell, template)
        with open(path, "w") as f:
            f.write(script)
        if dry_run:
            out(f"# {path}\n{script}")
            continue
        result = subprocess.run([sweep.slurm.submit, path], capture_output=True, text=True)
        launch.state = "submitted" if result.returncode == 0 else "failed"
        out(f"{launch.cell.name}: {launch.state}: {(result.stdout + result.stderr).strip()}")


def launch(plan: Plan, executor: str, dry_run: bool = False, parallel: int = 1, out=print,
           stream: bool = False) -> list[CellLaunch]:
    """Run (or submit) every unfinished cell of a written plan; returns each cell's outcome. `stream`: show the
    trainers' progress lines through `out` as they come."""
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
        _submit(sweep, todo, dry_run, out)
    elif dry_run:
        for launch in todo:
            out(" ".join(train_command(sweep, executor, launch.cell.config)))
    else:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda launch: _run_cell(sweep, executor, launch, out, stream), todo))
    return launches
