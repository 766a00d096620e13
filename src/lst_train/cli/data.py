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
from lst_train.data.ingest.pack import packed_index
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
        summary = build_demo_eval(args.out, args.items, args.seed, n_pairs=args.pairs)
    except BuildError as err:
        raise SystemExit(f"lst-train: {err}") from None
    pairs = ", ".join(f"{n} {kind} pairs" for kind, n in summary["pairs"].items())
    print(f"wrote {args.out}: {summary['items']} stories (2-way and 4-way), {summary['dropped']} dropped; {pairs}, "
          f"{sum(summary['pairs_dropped'].values())} dropped")


def add_data_build_demo_eval_parser(data_commands) -> None:
    parser = data_commands.add_parser("build-demo-eval", help="spoken StoryCloze-like and sWUGGY / sBLIMP-like "
                                      "pair sets from held-out text")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--items", type=int, default=100, help="stories")
    parser.add_argument("--pairs", type=int, help="pairs of each kind (default: 4 × --items)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=_run_build_demo_eval)


def _run_inspect(args: argparse.Namespace) -> None:
    spec = LoaderSpec.from_recipe(load_config(args.config, args.overrides))
    for source in spec.data.sources:
        index = packed_index(source.path)
        if index is not None:
            timings = index["word_timings"]
            print(f"{source.path}: packed set (index.json): {index['utterances']} utterances, {index['hours']} h, "
                  f"{index['speakers']} speakers, word timings for {timings['coverage']:.1%} "
                  f"(given {timings['given']}, aligned {timings['aligned']}), skipped {index['skipped'] or 'nothing'}")
    s = inspect_loader(spec, args.batches)
    print(f"{s['batches']} batches in {s['seconds']} s: {s['tokens_per_s']:,} tokens/s, "
          f"{s['speech_seconds_per_s']} speech seconds/s")
    print(f"modality mix: speech {s['speech_token_fraction']}, text {s['text_token_fraction']} of tokens; "
          f"training targets {s['target_token_fraction']}")
    print(f"tokens per patch: all {s['tokens_per_patch']}, static {s['tokens_per_patch_static']}, "
          f"aligned {s['tokens_per_patch_aligned']} (word {s['tokens_per_word_patch']}, "
          f"silence {s['tokens_per_silence_patch']}), entropy {s['tokens_per_patch_entropy']}")
    print(f"speech patches per second of speech: {s['speech_patches_per_second']}")
    print(f"rows stopped short at data.max_row_tokens: {s['capped_rows']}; "
          f"before a whole task document: {s['short_rows']}")
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


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """'512MB' -> 512000000; also KB, GB, KiB, MiB, GiB and plain bytes."""
    number = text.rstrip("BbKkMmGgIi")
    unit = text[len(number):].upper()
    try:
        value = float(number) * _SIZE_UNITS[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{text!r}: give a size like 512MB, 2GB or 100000") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a shard needs a positive size")
    return int(value)


def _pack_options(args: argparse.Namespace):
    from lst_train.data.ingest.sample_builder import PackOptions

    return PackOptions(align=args.align, keep_unaligned=args.keep_unaligned, realign=getattr(args, "realign", False),
                       dictionary=args.dict, units=args.units, min_seconds=args.min_seconds, max_seconds=args.max_seconds)


def _print_index(verb: str, out: Path, index: dict) -> None:
    timings = index["word_timings"]
    print(f"{verb} {index['utterances']} utterances, {index['hours']:.3f} h, {index['words']} words, "
          f"{index['speakers']} speakers into {len(index['shards'])} shard(s) under {out} ({out / 'index.json'}); "
          f"word timings: given {timings['given']}, aligned {timings['aligned']}, none {timings['none']} "
          f"(coverage {timings['coverage']:.1%}); skipped: {index['skipped'] or 'nothing'}")


def _run_pack(args: argparse.Namespace) -> None:
    from lst_train.data.ingest.pack import pack_corpus
    from lst_train.data.ingest.plan import PackError

    try:
        index = pack_corpus(args.sources, Path(args.out), _pack_options(args), args.shard_size, args.shuffle_seed,
                            args.workers)
    except (PackError, FileNotFoundError, RuntimeError) as err:
        raise SystemExit(f"lst-train: {err}") from None
    _print_index("packed", Path(args.out), index)


def _run_align(args: argparse.Namespace) -> None:
    from lst_train.data.ingest.pack import align_shards
    from lst_train.data.ingest.plan import PackError

    try:
        index = align_shards(args.shards, Path(args.out), _pack_options(args), args.workers)
    except (PackError, RuntimeError) as err:
        raise SystemExit(f"lst-train: {err}") from None
    _print_index("aligned", Path(args.out), index)


def _add_sample_options(parser: argparse.ArgumentParser, default_align: str) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (a re-run finishes it)")
    parser.add_argument("--align", choices=("none", "pocketsphinx"), default=default_align,
                        help=f"forced alignment for samples without word timings (default {default_align})")
    parser.add_argument("--keep-unaligned", action="store_true",
                        help="pack samples the aligner cannot time without timings instead of skipping them")
    parser.add_argument("--dict", default="", metavar="FILE",
                        help="extra pronunciations for the aligner, CMUdict lines 'word PH ON EMES'")
    parser.add_argument("--units", default="", metavar="FILE.safetensors",
                        help="also store k-means units (KEY.units.json) from this `tokenizer train-units` file")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--min-seconds", type=float, default=0.2, help="skip shorter audio (default 0.2)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="skip longer audio (default 120)")


def add_data_pack_parsers(data_commands) -> None:
    """`data pack SRC... --out DIR` and `data align SHARDS... --out DIR`."""
    pack = data_commands.add_parser(
        "pack", help="LibriSpeech trees, jsonl/tsv manifests or audio+.txt folders -> training shards + index.json")
    pack.add_argument("sources", nargs="+", metavar="SRC", help="a directory or a .jsonl / .tsv manifest")
    _add_sample_options(pack, "none")
    pack.add_argument("--shard-size", type=parse_size, default="512MB", help="bytes per shard (default 512MB)")
    pack.add_argument("--shuffle-seed", type=int, help="shuffle the utterance order with this seed (default: sorted)")
    pack.set_defaults(run=_run_pack)
    align = data_commands.add_parser("align", help="add forced-alignment word timings to existing shards")
    align.add_argument("shards", nargs="+", metavar="SHARDS", help="shard files or glob patterns ('dir/*.tar')")
    _add_sample_options(align, "pocketsphinx")
    align.add_argument("--realign", action="store_true", help="also re-time samples that have word timings")
    align.set_defaults(run=_run_align)
