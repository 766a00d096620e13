"""`lst-train eval RUN_DIR_OR_EXPORT --data FILE.jsonl [--settings s2s,t2t,s2t,t2s] [--out results.json]`."""

import argparse
import json
import os

import torch
import torch.distributed as dist

from lst_train.data.skips import SkipCounter, merge_skip_counts
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.evaluation.items import read_items
from lst_train.evaluation.prompts import SETTINGS, PromptBuilder, evaluation_patcher
from lst_train.evaluation.scoring import evaluate, with_accuracy
from lst_train.export import load_for_eval


def _run(args: argparse.Namespace) -> None:
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"lst-train eval: unknown settings {unknown}; choose from {sorted(SETTINGS)}")
    model, cfg = load_for_eval(args.model)
    device = torch.device(args.device)
    model.to(device)
    skips = SkipCounter()
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    items = read_items(args.data, skips)[rank::world_size]  # under torchrun every rank scores its share
    builder = PromptBuilder(SpeechTextTokenizer.from_config(cfg.data, model.vocab),
                            evaluation_patcher(cfg.model.arch, cfg.patching, cfg.training.steps))
    results = evaluate(model, builder, items, settings, skips, args.batch_size, progress=rank == 0,
                       pad_to_multiple=cfg.data.pad_to_multiple)
    results["skipped"] = skips.as_dict()
    if world_size > 1:
        results = _combine_ranks(results, settings)
        if rank != 0:
            return
    for setting in settings:
        r = results[setting]
        print(f"{setting}: {r['items']} items, accuracy (sum) {r['accuracy_sum']}, (mean) {r['accuracy_mean']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results))


def _combine_ranks(results: dict, settings: list[str]) -> dict:
    """Sum the per-rank counts (gloo: no GPU needed to gather a few numbers)."""
    dist.init_process_group("gloo")
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, results)
    dist.destroy_process_group()
    combined = {"skipped": merge_skip_counts(r["skipped"] for r in gathered)}
    for setting in settings:
        combined[setting] = with_accuracy({key: sum(r[setting][key] for r in gathered)
                                           for key in ("items", "correct_sum", "correct_mean")})
    return combined


def add_eval_parser(commands) -> None:
    parser = commands.add_parser("eval", help="multiple-choice story completion (S→S, T→T, S→T, T→S); "
                                "`eval convert` converts published sets")
    parser.add_argument("model", help="a run directory (latest checkpoint) or an export directory")
    parser.add_argument("--data", required=True, help="items, jsonl (see lst_train.evaluation.items)")
    parser.add_argument("--settings", default="s2s,t2t,s2t,t2s")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.set_defaults(run=_run)
