"""`lst-train data fit-entropy RECIPE [key=value ...] --out FILE`: the entropy patcher's speech-code LM, fitted on the
recipe's speech through its codec (patching.strategy=entropy, patching.entropy_table=FILE)."""

import argparse
import json

from lst_train.config import load_config
from lst_train.data.entropy_fit import DOCUMENTS, SMOOTHING, entropy_summary, fit_entropy_table
from lst_train.data.skips import SkipCounter


def _run_fit_entropy(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.overrides)
    skips = SkipCounter()
    table, documents = fit_entropy_table(cfg.data, cfg.model, skips, args.documents, args.smoothing)
    table.save(args.out)
    summary = {"out": args.out, "documents": documents, **entropy_summary(table), "skipped": skips.as_dict()}
    print(f"{args.out}: {summary['frames']} frames of {documents} documents, {summary['codes_seen']} of "
          f"{len(table.entropy)} codes seen, mean next-code entropy {summary['mean_entropy']} nats (uniform: "
          f"{summary['max_entropy']}); skipped {summary['skipped'] or 'nothing'}")
    print("threshold for a mean patch length of " + ", ".join(
        f"{n} frames: {value}" for n, value in summary["thresholds"].items()) + " (patching.entropy_threshold; 0 = "
          "patching.size frames)")
    print(json.dumps(summary))


def add_data_fit_entropy_parser(data_commands) -> None:
    parser = data_commands.add_parser("fit-entropy", help="fit the entropy patcher's speech-code bigram LM on a "
                                                          "recipe's speech")
    parser.add_argument("config", help="YAML recipe: its speech sources, codec and vocabulary are used")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--out", required=True, help="the table to write (.safetensors)")
    parser.add_argument("--documents", type=int, default=DOCUMENTS,
                        help=f"documents read from each speech source, in shard order (default {DOCUMENTS})")
    parser.add_argument("--smoothing", type=float, default=SMOOTHING,
                        help=f"add-k smoothing of the bigram counts (default {SMOOTHING})")
    parser.set_defaults(run=_run_fit_entropy)
