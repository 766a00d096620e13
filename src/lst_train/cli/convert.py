"""`lst-train eval convert {storycloze,hellaswag,swuggy,sblimp} SOURCE --out DIR`: published benchmarks to our item
format.

Writes `DIR/items.jsonl` (lst_train.evaluation.items) and `DIR/audio/` (sWUGGY and sBLIMP items point at the
release's own wav files). Sources are read from local files (users download them); bad records are skipped,
counted by reason and logged. Text-only sources are spoken by espeak-ng (one voice and rate for the whole set,
with word timings) unless `--no-tts`.
"""

import argparse
import functools
from pathlib import Path

from lst_train.data.skips import SkipCounter
from lst_train.corpora.convert_hellaswag import convert_hellaswag
from lst_train.corpora.convert_items import ConvertError, ConvertOptions, prepare_out
from lst_train.corpora.convert_storycloze import convert_storycloze
from lst_train.corpora.convert_zerospeech import FOLDERS, convert_zerospeech

CONVERTERS = {"storycloze": convert_storycloze, "hellaswag": convert_hellaswag,
              **{name: functools.partial(convert_zerospeech, name) for name in FOLDERS}}


def _run(args: argparse.Namespace) -> None:
    skips = SkipCounter()
    convert = CONVERTERS[args.benchmark]
    if not args.source.exists():
        raise SystemExit(f"lst-train eval convert: {args.source} does not exist: pass the downloaded "
                         f"{args.benchmark} file or folder")
    created = not args.out.exists()
    try:
        prepare_out(args.out)
        speech = {key: getattr(args, key) for key in ("no_tts", "voice", "rate") if hasattr(args, key)}
        options = ConvertOptions(args.source, args.out, args.limit, args.seed, **speech)
        items = convert(options, skips)
    except ConvertError as err:
        if (args.out / "audio").is_dir() and not any((args.out / "audio").iterdir()):
            (args.out / "audio").rmdir()  # leave no half-made output in the way of the next attempt
            if created:
                args.out.rmdir()
        raise SystemExit(f"lst-train eval convert: {err}") from None
    if not any((args.out / "audio").iterdir()):
        (args.out / "audio").rmdir()  # text-only items, or items that point at a release's own audio
    print(f"wrote {args.out / 'items.jsonl'}: {len(items)} items; skipped {skips.as_dict()}")


def build_convert_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lst-train eval convert",
                                     description="convert a published benchmark to evaluation items (jsonl + audio)")
    benchmarks = parser.add_subparsers(dest="benchmark", required=True)
    story = benchmarks.add_parser(
        "storycloze", help="spoken StoryCloze / TopicStoryCloze release folder (sSC/ or tSC/), or a StoryCloze CSV")
    story.add_argument("source", type=Path, help="the release's sSC or tSC folder, or a StoryCloze .csv")
    hella = benchmarks.add_parser("hellaswag", help="HellaSwag jsonl (hellaswag_val.jsonl), spoken by espeak-ng")
    hella.add_argument("source", type=Path, help="e.g. hellaswag_val.jsonl")
    pairs = [benchmarks.add_parser(name, help=f"ZeroSpeech 2021 {folder}/dev or /test folder (wav files and "
                                   "gold.csv): pair-preference items without a context, scored in s2s and t2t")
             for name, folder in FOLDERS.items()]
    for sub in pairs:
        sub.add_argument("source", type=Path, help="the folder holding gold.csv and the wav files")
    for sub in (story, hella, *pairs):
        sub.add_argument("--out", type=Path, required=True, help="a new or empty folder")
        sub.add_argument("--limit", type=int, help="convert only the first N usable items")
        sub.add_argument("--seed", type=int, default=0, help="order of the endings (release folders only)")
        sub.set_defaults(run=_run)
    for sub in (story, hella):
        sub.add_argument("--no-tts", action="store_true", help="text-only items (T→T) from text sources")
        sub.add_argument("--voice", default="en-us", help="espeak-ng voice for text sources (default en-us)")
        sub.add_argument("--rate", type=int, default=175, help="espeak-ng words per minute (default 175)")
    return parser


def convert_main(argv: list[str]) -> int:
    """Entry point for `lst-train eval convert ...` (routed by lst_train.cli.main, beside `eval MODEL`)."""
    args = build_convert_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise SystemExit("lst-train eval convert: --limit must be at least 1")
    args.run(args)
    return 0
