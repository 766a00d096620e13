"""`lst-train demo [--scale S] [--seeds N ...] [--out demo_out]`: the whole story on one machine (lst_train.demo.pipeline)."""

import argparse
import os

from lst_train.demo.pipeline import DEFAULT_SWEEP, run_demo


def _run(args: argparse.Namespace) -> None:
    if args.scale <= 0:
        raise SystemExit(f"lst-train demo: --scale must be > 0, got {args.scale}")
    if args.minutes is not None and args.minutes <= 0:
        raise SystemExit(f"lst-train demo: --minutes must be > 0, got {args.minutes}")
    run_demo(args.out, args.scale, args.ranks, args.sweep, args.seeds, args.minutes)


def add_demo_parser(commands) -> None:
    parser = commands.add_parser("demo", help="corpus, eval set, baseline vs LST at equal FLOPs, report")
    parser.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    parser.add_argument("--scale", type=float, default=float(os.environ.get("DEMO_SCALE", 1.0)),
                        help="multiplies corpus, evaluation set and FLOP budget (default $DEMO_SCALE or 1)")
    parser.add_argument("--ranks", type=int, default=2, help="torchrun ranks per run (default 2)")
    parser.add_argument("--seeds", type=int, nargs="+", help="train every family once per seed (default: the sweep "
                        "file's seeds); the report gives the mean ± std of the held-out differences")
    parser.add_argument("--minutes", type=float, help="minutes of training speech in the corpus (default: the sweep "
                        "file's demo_minutes times --scale)")
    parser.add_argument("--sweep", default=DEFAULT_SWEEP, help=f"the sweep file (default {DEFAULT_SWEEP})")
    parser.set_defaults(run=_run)
