"""`lst-train eval convert {storycloze,hellaswag} SOURCE --out DIR`: published benchmarks to our item format.

Writes `DIR/items.jsonl` (lst_train.evaluation.items) and `DIR/audio/`. Sources are read from local files (users
download them); bad records are skipped, counted by reason and logged. Text-only sources are spoken by espeak-ng
(one voice and rate for the whole set, with word timings) unless `--no-tts`.
"""

import argparse
import json
import random
from pathlib import Path

from tqdm import tqdm

from lst_train.data import espeak
from lst_train.data.demo_corpus import SpokenScript, speak
from lst_train.data.skips import SkipCounter


class ConvertError(RuntimeError):
    """Bad arguments or an unusable source; a one-line message that names the fix."""


def prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise ConvertError(f"{out} is not empty: choose a new --out")
    (out / "audio").mkdir(parents=True)


def write_items(out: Path, items: list[dict]) -> None:
    (out / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")


def shuffled(rng: random.Random, endings: list[dict], label: int) -> tuple[list[dict], int]:
    """The endings in a seeded random order and the new index of the right one (so that a model giving every
    ending the same score cannot score by position)."""
    order = list(range(len(endings)))
    rng.shuffle(order)
    return [endings[i] for i in order], order.index(label)


def text_items(records: list[tuple[str, list[str], int]]) -> list[dict]:
    """Items without audio (T→T only) from (id, [context, *endings], label)."""
    return [{"id": key, "context": {"text": texts[0]}, "endings": [{"text": t} for t in texts[1:]], "label": label}
            for key, texts, label in records]


def spoken_items(records: list[tuple[str, list[str], int]], out: Path, voice: str, rate: int,
                 skips: SkipCounter) -> list[dict]:
    """Items whose context and endings are each spoken by espeak-ng into `out/audio/`, with word timings. An item
    with a segment espeak cannot time word by word (e.g. a bare symbol) is skipped as 'invalid_words'."""
    scripts = [SpokenScript(text, f"{key}-{role}", voice, rate)
               for key, texts, _ in records for role, text in enumerate(texts)]
    spoken = iter(speak(scripts))
    items = []
    for number, (key, texts, label) in enumerate(tqdm(records, desc="speaking", unit="item")):
        results = [next(spoken) for _ in texts]  # consume every segment so the stream stays aligned
        if any(r is None for r in results):
            skips.add("invalid_words", key, "espeak-ng could not time every word")
            continue
        segments = []
        for role, (text, (flac, meta, _)) in enumerate(zip(texts, results)):
            name = f"audio/{number:06d}-{role}.flac"
            (out / name).write_bytes(flac)
            segments.append({"text": text, "audio": name, "words": meta["words"]})
        items.append({"id": key, "context": segments[0], "endings": segments[1:], "label": label})
    return items


def finish(out: Path, records: list[tuple[str, list[str], int]], args: argparse.Namespace,
           skips: SkipCounter) -> list[dict]:
    """Speak (or not) the text records and write them."""
    if not args.no_tts:
        try:  # a bad voice would otherwise skip every item in the workers
            espeak.synthesize("check", args.voice, args.rate)
        except (espeak.EspeakMissing, ValueError) as err:
            raise ConvertError(str(err)) from None
    items = text_items(records) if args.no_tts else spoken_items(records, out, args.voice, args.rate, skips)
    write_items(out, items)
    return items


def _run(args: argparse.Namespace) -> None:
    from lst_train.evaluation.convert_hellaswag import convert_hellaswag
    from lst_train.evaluation.convert_storycloze import convert_storycloze

    skips = SkipCounter()
    convert = {"storycloze": convert_storycloze, "hellaswag": convert_hellaswag}[args.benchmark]
    if not args.source.exists():
        raise SystemExit(f"lst-train eval convert: {args.source} does not exist: pass the downloaded "
                         f"{args.benchmark} file or folder")
    created = not args.out.exists()
    try:
        prepare_out(args.out)
        items = convert(args, skips)
    except ConvertError as err:
        if (args.out / "audio").is_dir() and not any((args.out / "audio").iterdir()):
            (args.out / "audio").rmdir()  # leave no half-made output in the way of the next attempt
            if created:
                args.out.rmdir()
        raise SystemExit(f"lst-train eval convert: {err}") from None
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
    for sub in (story, hella):
        sub.add_argument("--out", type=Path, required=True, help="a new or empty folder")
        sub.add_argument("--limit", type=int, help="convert only the first N usable items")
        sub.add_argument("--seed", type=int, default=0, help="order of the endings (release folders only)")
        sub.add_argument("--no-tts", action="store_true", help="text-only items (T→T) from text sources")
        sub.add_argument("--voice", default="en-us", help="espeak-ng voice for text sources (default en-us)")
        sub.add_argument("--rate", type=int, default=175, help="espeak-ng words per minute (default 175)")
        sub.set_defaults(run=_run)
    return parser


def convert_main(argv: list[str]) -> int:
    """Entry point for `lst-train eval convert ...` (routed by lst_train.cli.main, beside `eval MODEL`)."""
    args = build_convert_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise SystemExit("lst-train eval convert: --limit must be at least 1")
    args.run(args)
    return 0
