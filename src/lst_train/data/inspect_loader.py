"""`lst-train data inspect CONFIG`: run the loader for N batches and report what it produces and skips."""

import argparse
import json
import time

from tqdm import tqdm

from lst_train.config import load_config
from lst_train.config.data import source_names, source_shares
from lst_train.data.dataset import build_dataloader
from lst_train.data.stats import LoaderStats


def inspect_loader(config: str, overrides: list[str], n_batches: int) -> dict:
    cfg = load_config(config, overrides)
    loader = build_dataloader(cfg)
    stats = LoaderStats()
    start = time.perf_counter()
    for batch in tqdm(loader, total=n_batches, desc="batches", unit="batch"):
        stats.update(batch)
        if stats.batches == n_batches:
            break
    seconds = time.perf_counter() - start
    summary = stats.summary()
    summary["source_names"] = source_names(cfg.data.sources)
    summary["source_weights"] = [round(share, 4) for share in source_shares(cfg.data.sources)]
    summary["tokens_per_s"] = round(summary["tokens"] / seconds, 1)
    summary["speech_seconds_per_s"] = round(summary["speech_seconds"] / seconds, 2)
    summary["seconds"] = round(seconds, 2)
    return summary


def _run(args: argparse.Namespace) -> None:
    s = inspect_loader(args.config, args.overrides, args.batches)
    print(f"{s['batches']} batches in {s['seconds']} s: {s['tokens_per_s']:,} tokens/s, "
          f"{s['speech_seconds_per_s']} speech seconds/s")
    print(f"modality mix: speech {s['speech_token_fraction']}, text {s['text_token_fraction']} of tokens")
    print(f"tokens per patch: all {s['tokens_per_patch']}, static {s['tokens_per_patch_static']}, "
          f"aligned {s['tokens_per_patch_aligned']} (word {s['tokens_per_word_patch']}, "
          f"silence {s['tokens_per_silence_patch']})")
    print(f"speech patches per second of speech: {s['speech_patches_per_second']}")
    print(f"rows stopped short at data.max_row_tokens: {s['capped_rows']}")
    print("token shares per source (realised / weight): " + ", ".join(
        f"{name} {share} / {weight}" for name, share, weight in
        zip(s["source_names"], s["source_token_shares"], s["source_weights"])))
    print(f"skipped: {s['skipped'] or 'nothing'}")
    print(json.dumps(s))


def add_data_inspect_parser(data_commands) -> None:
    parser = data_commands.add_parser("inspect", help="iterate the loader of a recipe and print its statistics")
    parser.add_argument("config", help="YAML recipe with a data section")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    parser.add_argument("--batches", type=int, default=20, help="batches to read (default 20)")
    parser.set_defaults(run=_run)
