"""`lst-train sweep plan|launch|collect|plot SWEEP.yaml`."""

import argparse
import os
import sys

from lst_train.config.sweep import load_sweep
from lst_train.sweeps.launch import EXECUTORS


def _plan(args: argparse.Namespace) -> None:
    from lst_train.sweeps.plan import format_table, plan_sweep, write_plan

    plan = plan_sweep(load_sweep(args.sweep))
    write_plan(plan)
    print(format_table(plan))
    print(f"{len(plan.cells)} run configs in {os.path.join(plan.sweep.out_dir, 'configs')}")


def _launch(args: argparse.Namespace) -> None:
    from lst_train.sweeps.launch import launch
    from lst_train.sweeps.plan import plan_sweep, write_plan

    plan = plan_sweep(load_sweep(args.sweep))
    write_plan(plan)
    if args.wait and args.executor != "slurm":
        sys.exit("lst-train: --wait is for --executor slurm (the local and torchrun executors always wait)")
    outcomes = launch(plan, args.executor, args.dry_run, args.parallel, stream=not args.quiet, wait=args.wait)
    failed = [o.cell.name for o in outcomes if o.state == "failed"]
    if failed:
        print(f"lst-train: {len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


def _collect(args: argparse.Namespace) -> None:
    from lst_train.sweeps.collect import collect

    sweep = load_sweep(args.sweep)
    rows = collect(sweep)
    done = sum(row["status"] == "done" for row in rows)
    print(f"{done} of {len(rows)} cells finished; wrote {os.path.join(sweep.out_dir, 'results.csv')}")


def _plot(args: argparse.Namespace) -> None:
    from lst_train.sweeps.collect import read_csv
    from lst_train.sweeps.plot import plot

    sweep = load_sweep(args.sweep)
    results = os.path.join(sweep.out_dir, "results.csv")
    if not os.path.isfile(results):
        sys.exit(f"lst-train: no {results}; run `lst-train sweep collect {args.sweep}` first")
    files = plot(sweep, read_csv(results))
    for family, fit in files.fits.items():
        print(f"{family}: " + (f"L(C) = {fit.a:.4g}·C^-{fit.b:.4g} + {fit.c:.4g} ({fit.points} points)" if fit
                               else "not fitted (fewer than 3 points with distinct FLOPs)"))
    print("wrote " + ", ".join(p for p in (files.loss, files.accuracy, files.summary) if p))


def add_sweep_parser(commands) -> None:
    sweep = commands.add_parser("sweep", help="scaling sweeps at equal compute or data (docs/sweeps.md)")
    stages = sweep.add_subparsers(dest="sweep_command", required=True)
    for name, run, help_text in (
            ("plan", _plan, "derive every cell's steps, print the table, write one run config per cell"),
            ("launch", _launch, "run or submit the unfinished cells (finished ones are skipped, others resume)"),
            ("collect", _collect, "OUT_DIR/results.csv: final losses, accuracies, FLOPs, tokens, throughput"),
            ("plot", _plot, "fit L(C) = a·C^-b + c per family; PNG plots and summary.md")):
        stage = stages.add_parser(name, help=help_text)
        stage.add_argument("sweep", help="SWEEP.yaml, e.g. recipes/sweep_demo.yaml")
        stage.set_defaults(run=run)
        if name == "launch":
            stage.add_argument("--executor", choices=EXECUTORS, default="local",
                               help="local: one process per cell; torchrun: `ranks` processes per cell; slurm: "
                                    "one sbatch per cell from slurm.template")
            stage.add_argument("--dry-run", action="store_true", help="print the commands or sbatch scripts only")
            stage.add_argument("--parallel", type=int, default=1, help="local/torchrun: cells run at once")
            stage.add_argument("--wait", action="store_true",
                               help="slurm: return once the cells' jobs have left the queue (requeues included); "
                                    "exit 1 if a cell's run did not finish")
            stage.add_argument("--quiet", action="store_true",
                               help="local/torchrun: do not echo the trainers' progress lines (RUN_DIR/launch.log "
                                    "has everything)")
