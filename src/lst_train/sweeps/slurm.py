"""The slurm executor of `sweep launch`: one sbatch script per cell made from slurm.template, submitted unless that
cell's job is already queued or running (two jobs on one run directory would write the same checkpoints), and, with
--wait, watched until every job has left the queue (requeued jobs stay in it)."""

import os
import re
import subprocess
import sys
import time

from lst_train.config import ConfigError
from lst_train.config.sweep import SweepConfig
from lst_train.sweeps.plan import Cell

POLL_SECONDS = 5.0


def sbatch_script(sweep: SweepConfig, cell: Cell, template: str) -> str:
    """The template with this cell's #SBATCH lines, its config as the script's arguments, its ranks per node
    (NPROC_PER_NODE) and this Python."""
    slurm = sweep.slurm
    per_node = min(sweep.ranks, slurm.ranks_per_node)
    if sweep.ranks % per_node:
        raise ConfigError(f"ranks: {sweep.ranks} is not a multiple of slurm.ranks_per_node={slurm.ranks_per_node}")
    options = {"job-name": job_name(sweep, cell), "nodes": str(sweep.ranks // per_node),
               "gpus-per-node": str(per_node) if slurm.gpus else None, "time": slurm.time,
               "output": os.path.join(os.path.abspath(sweep.out_dir), "slurm", "%x-%j.out")}
    options |= {k: v for k, v in (("partition", slurm.partition), ("account", slurm.account)) if v}
    options |= slurm.options
    lines = template.splitlines()
    last_option = max(i for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    script = []
    for i, line in enumerate(lines):
        match = re.match(r"#SBATCH --([\w-]+)=", line)
        if match and match.group(1) in options:
            value = options.pop(match.group(1))
            line = None if value is None else f"#SBATCH --{match.group(1)}={value}"
        if line is not None and line.startswith("PYTHON="):
            # The template reads its recipe and overrides from "$@": make them this cell's config.
            script += [f"set -- {os.path.abspath(cell.config)}", f"export NPROC_PER_NODE={per_node}"]
            line = f"PYTHON=${{PYTHON:-{sys.executable}}}"
        if line is not None:
            script.append(line)
        if i == last_option:
            script += [f"#SBATCH --{k}={v}" for k, v in options.items() if v is not None]
    return "\n".join(script) + "\n"


def job_name(sweep: SweepConfig, cell: Cell) -> str:
    return f"{sweep.name}-{cell.name}"


def queued_jobs(sweep: SweepConfig) -> dict[str, str]:
    """Job name -> job id of this user's jobs SLURM still lists (pending, running, requeued)."""
    try:
        result = subprocess.run([sweep.slurm.queue, "--me", "--noheader", "--format=%i|%j"], capture_output=True,
                                text=True)
    except OSError as err:
        raise ConfigError(f"slurm.queue: cannot run {sweep.slurm.queue!r} ({err.strerror})") from None
    if result.returncode != 0:
        raise RuntimeError(f"{sweep.slurm.queue} failed: {result.stderr.strip()}")
    return {name: job for job, name in (line.split("|", 1) for line in result.stdout.splitlines() if "|" in line)}


def submit(sweep: SweepConfig, cells: list[Cell], dry_run: bool, out) -> list[tuple[str, str | None]]:
    """Write each cell's script to OUT_DIR/slurm/CELL.sbatch and submit it (dry run: print it); per submitted
    cell, its state ('submitted', 'queued': its job is already in the queue, 'failed': refused) and job id."""
    if not os.path.isfile(sweep.slurm.template):
        raise ConfigError(f"slurm.template: no file {sweep.slurm.template!r} (relative to {os.getcwd()})")
    with open(sweep.slurm.template) as f:
        template = f.read()
    folder = os.path.join(sweep.out_dir, "slurm")
    os.makedirs(folder, exist_ok=True)
    queued = {} if dry_run else queued_jobs(sweep)
    jobs: list[tuple[str, str | None]] = []
    for cell in cells:
        path = os.path.join(folder, f"{cell.name}.sbatch")
        script = sbatch_script(sweep, cell, template)
        with open(path, "w") as f:
            f.write(script)
        if dry_run:
            out(f"# {path}\n{script}")
            continue
        if job_name(sweep, cell) in queued:
            job = queued[job_name(sweep, cell)]
            out(f"{cell.name}: queued already (job {job}), not submitted again")
            jobs.append(("queued", job))
            continue
        try:
            result = subprocess.run([sweep.slurm.submit, path], capture_output=True, text=True)
        except OSError as err:
            raise ConfigError(f"slurm.submit: cannot run {sweep.slurm.submit!r} ({err.strerror})") from None
        job = re.search(r"\d+", result.stdout) if result.returncode == 0 else None
        jobs.append(("submitted", job.group()) if job else ("failed", None))
        out(f"{cell.name}: {jobs[-1][0]}: {(result.stdout + result.stderr).strip()}")
    return jobs


def wait_for_jobs(sweep: SweepConfig, jobs: list[str], out, poll: float = POLL_SECONDS) -> None:
    """Return once none of `jobs` is listed by slurm.queue any more."""
    waiting = set(jobs)
    while waiting:
        time.sleep(poll)
        listed = set(queued_jobs(sweep).values())
        for job in sorted(waiting - listed):
            out(f"job {job} left the queue")
        waiting &= listed
