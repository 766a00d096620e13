"""`lst-train data build-demo | build-demo-eval | inspect`: the offline demo corpus, its spoken evaluation set, and
what a recipe's loader produces and skips."""

import argparse
import json
import time
from pathlib import Path

from lst_train.config import load_config
from lst_train.corpora import espeak
from lst_train.corpora.demo_corpus import BuildError, build_demo_corpus
from lst_train.corpora.demo_eval import build_demo_eval
from lst_train.data.inspect_loader import inspect_loader
from lst_train.data.loader_spec import LoaderSpec


def _run_build_demo(args: argparse.Namespace) -> None:
    """`lst-train data build-demo`: build, then print one summary line; missing packages end with one line."""
    start = time.perf_counter()
    try:
        manifest = build_demo_corpus(Path(args.out), args.minutes, args.seed, args.vocab_size)
    except (BuildError, espeak.EspeakMissing) as err:
        raise SystemExit(f"lst-train: {err}") from None
    speech, text = manifest["speech"], manifest["text"]
    print(f"wrote {args.out}: {speech['samples']} utterances, {speech['seconds'] / 60:.1f} min of speech "
          f"({speech['shards']} shards), {text['lines']} text lines ({text['chars']:,} chars), "
          f"{manifest['heldout']['lines']} held-out lines, held-out loss splits "
          + ", ".join(f"{name} ({split['speech']['seconds'] / 60:.1f} min, {split['text_lines']} lines)"
                      for name, split in manifest["splits"].items())
          + f", {manifest['tokenizer']['ranks']} BPE ranks; "
          f"{time.perf_counter() - start:.1f} s")


def add_data_build_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `build-demo --out DIR [--minutes M] [--seed S] [--vocab-size N]` to the `data` subcommands."""
    build = subparsers.add_parser("build-demo", help="build the offline demo corpus (KJV text + espeak-ng speech)")
    build.add_argument("--out", required=True, metavar="DIR", help="new or empty output directory")
    build.add_argument("--minutes", type=float, default=20.0, help="total minutes of speech (default 20)")
    build.add_argument("--seed", type=int, default=0, help="seed for chapter order, voices, rates, lengths")
    build.add_argument("--vocab-size", type=int, default=2048, help="BPE ranks to train on the text part")
    build.set_defaults(run=_run_build_demo)


def _run_build_demo_eval(args: argparse.Namespace) -> None:
    try:
        summary = build_demo_eval(args.out, args.items, args.seed)
    except BuildError as err:
        raise SystemExit(f"lst-train: {err}") from None
    print(f"wrote {args.out}: {summary['items']} items (2-way and 4-way), {summary['dropped']} dropped")


def add_data_build_demo_eval_parser(data_commands) -> None:
    parser = data_commands.add_parser("build-demo-eval", help="a spoken StoryCloze-like set from held-out text")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=_run_build_demo_eval)


def _run_inspect(args: argparse.Namespace) -> None:
    s = inspect_loader(LoaderSpec.from_recipe(load_config(args.config, args.overrides)), args.batches)
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
    parser.set_defaults(run=_run_inspect)
