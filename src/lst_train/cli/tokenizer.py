"""`lst-train tokenizer train --input PATH... --vocab-size N --out FILE.tiktoken`."""

import argparse
import time

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
          f"({stats.bad_lines} bad lines skipped); {time.perf_counter() - start:.1f} s")


def add_tokenizer_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add `tokenizer train --input PATH [PATH ...] --vocab-size N --out FILE.tiktoken` to `subparsers`."""
    tokenizer = subparsers.add_parser("tokenizer", help="train the byte-level BPE text tokenizer")
    actions = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    train = actions.add_parser("train", help="train BPE ranks on text files and write a .tiktoken file")
    train.add_argument("--input", nargs="+", required=True, metavar="PATH",
                       help="training text: .txt (paragraphs), .jsonl or .jsonl.zst (field \"text\")")
    train.add_argument("--vocab-size", type=int, required=True, metavar="N",
                       help="number of ranks, including the 256 single bytes")
    train.add_argument("--out", required=True, metavar="FILE.tiktoken", help="ranks file to write")
    train.set_defaults(run=_run_train)
