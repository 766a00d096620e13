"""`lst-train tokenizer train --input PATH... --vocab-size N --out FILE.tiktoken` (text BPE) and
`lst-train tokenizer train-units --input SHARDS... --units K --out FILE.safetensors` (25 Hz speech units)."""

import argparse
import time

from lst_train.data.skips import SkipCounter
from lst_train.data.speech_units import train_units
from lst_train.data.text_tokenizer import TextStats, read_training_texts, train_bpe, write_ranks


def _run_train(args: argparse.Namespace) -> None:
    """`lst-train tokenizer train`: train ranks on the inputs, write them, print one summary line."""
    start = time.perf_counter()
    stats = TextStats()
    ranks = train_bpe(read_training_texts(args.input, stats), args.vocab_size, progress=True)
    write_ranks(ranks, args.out)
    short = f" (fewer than --vocab-size {args.vocab_size}: no pair left occurring twice)" if len(
        ranks) < args.vocab_size else ""
    print(f"wrote {len(ranks)} ranks to {args.out}{short}; read {stats.chars:,} chars in {stats.texts:,} texts "
          f"({stats.bad_lines} bad lines skipped, {stats.bad_files} files cut short); "
          f"{time.perf_counter() - start:.1f} s")


def _run_train_units(args: argparse.Namespace) -> None:
    """`lst-train tokenizer train-units`: k-means over the MFCC frames of the shards, written as a units file."""
    start = time.perf_counter()
    if args.units < 2:
        raise SystemExit(f"lst-train tokenizer train-units: --units must be >= 2, got {args.units}")
    skips = SkipCounter()
    try:
        summary = train_units(args.input, args.units, args.out, args.max_minutes, args.seed, skips)
    except ValueError as err:
        raise SystemExit(f"lst-train tokenizer train-units: {err}") from None
    print(f"wrote {args.units} units to {args.out}: {summary['units_used']} in use over {summary['frames']:,} frames "
          f"of {summary['seconds'] / 60:.1f} min ({summary['clips']} clips, {summary['shards']} shards); entropy "
          f"{summary['entropy_nats']:.2f} of {summary['max_entropy_nats']:.2f} nats; skipped {skips.as_dict()}; "
          f"{time.perf_counter() - start:.1f} s")


def add_tokenizer_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `tokenizer train` (text BPE) and `tokenizer train-units` (speech units) to `subparsers`."""
    tokenizer = subparsers.add_parser("tokenizer", help="train the text BPE or the 25 Hz speech units")
    actions = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    train = actions.add_parser("train", help="train BPE ranks on text files and write a .tiktoken file")
    train.add_argument("--input", nargs="+", required=True, metavar="PATH",
                       help="training text: .txt (paragraphs), .jsonl or .jsonl.zst (field \"text\")")
    train.add_argument("--vocab-size", type=int, required=True, metavar="N",
                       help="number of ranks, including the 256 single bytes")
    train.add_argument("--out", required=True, metavar="FILE.tiktoken", help="ranks file to write")
    train.set_defaults(run=_run_train)
    units = actions.add_parser("train-units", help="fit 25 Hz k-means speech units over MFCCs of speech shards "
                               "(for data.codec.kind=kmeans)")
    units.add_argument("--input", nargs="+", required=True, metavar="SHARDS",
                       help="speech shard globs (.tar with audio); use the training split only")
    units.add_argument("--units", type=int, default=256, metavar="K", help="number of units (default 256)")
    units.add_argument("--out", required=True, metavar="FILE.safetensors", help="units file to write")
    units.add_argument("--max-minutes", type=float, default=600.0,
                       help="audio read, in sorted shard order (default 600)")
    units.add_argument("--seed", type=int, default=0, help="seed of the k-means++ start (default 0)")
    units.set_defaults(run=_run_train_units)
