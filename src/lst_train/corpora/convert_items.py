"""What every benchmark converter shares: the output folder, shuffled endings, text items, items spoken by
espeak-ng (with word timings), and writing items.jsonl."""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lst_train.corpora import espeak
from lst_train.corpora.demo_corpus import SpokenScript, speak
from lst_train.data.skips import SkipCounter


@dataclass
class ConvertOptions:
    """What a conversion reads, writes and how (lst-train eval convert's options)."""

    source: Path
    """The downloaded benchmark: a release folder, a CSV or a jsonl."""
    out: Path
    """A new or empty folder for items.jsonl and audio/."""
    limit: int | None = None
    """Convert only the first N usable items."""
    seed: int = 0
    """Order of the endings (release folders)."""
    no_tts: bool = False
    """Text-only items (T→T) from text sources."""
    voice: str = "en-us"
    """espeak-ng voice for text sources."""
    rate: int = 175
    """espeak-ng words per minute."""


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


def finish(out: Path, records: list[tuple[str, list[str], int]], options: ConvertOptions,
           skips: SkipCounter) -> list[dict]:
    """Speak (or not) the text records and write them."""
    if not options.no_tts:
        try:  # a bad voice would otherwise skip every item in the workers
            espeak.synthesize("check", options.voice, options.rate)
        except (espeak.EspeakMissing, ValueError) as err:
            raise ConvertError(str(err)) from None
    items = text_items(records) if options.no_tts else spoken_items(records, out, options.voice, options.rate, skips)
    write_items(out, items)
    return items
