"""`lst-train data build-demo`: a small offline speech+text corpus from public-domain text and espeak-ng.

Text is the King James Version of the Bible (Debian `bible-kjv`), split by book into three disjoint parts:
speech (spoken by espeak-ng with seeded voices and rates, with word timings), text-only shards, and six held-out
books: their text for the evaluation stories (heldout/text.jsonl), and two held-out loss splits of three books
each, `valid/` (to choose settings on) and `test/` (to report on), with speech and text shards like training's.
A BPE ranks file is trained on the text part, and 25 Hz k-means speech units (`units.safetensors`, for
data.codec.kind=kmeans) on the training speech. Same seed -> byte-identical output.
"""

from __future__ import annotations

import io
import itertools
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import soundfile
import zstandard
from tqdm import tqdm

from lst_train.corpora import espeak
from lst_train.data.ingest.shard_writer import write_tar
from lst_train.data.skips import SkipCounter
from lst_train.data.speech_units import train_units
from lst_train.data.text_tokenizer import train_bpe, write_ranks

SOURCE = {"name": "King James Version of the Bible (1611)", "via": "Debian package bible-kjv (bible-kjv-text)",
          "licence": "public domain (copyright expired)"}
BIBLE_INSTALL = "apt-get install -y bible-kjv"
HELDOUT_BOOKS = ("1 Kings", "Song of Solomon", "Micah", "Acts", "2 Timothy", "Revelation")
SPLIT_BOOKS = {"valid": ("1 Kings", "Micah", "2 Timothy"), "test": ("Song of Solomon", "Acts", "Revelation")}
SPLIT_SHARE = 0.125  # each held-out split's speech, as a share of the training speech minutes
LAYOUT = 3  # 2: with the valid/ and test/ held-out loss splits; 3: with units.safetensors
UNITS = 100  # k-means units over MFCCs, as in HuBERT's first iteration
BASE_VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
VARIANTS = ("", "+m1", "+m3", "+f1", "+f3")
RATES = (140, 190)  # words per minute, inclusive
SECONDS = (3.0, 15.0)  # utterance length, estimated from the word count
ESPEAK_SPEEDUP = 1.2  # espeak-ng speaks this text ~1.2x faster than its nominal words per minute (measured)
SPEECH_SHARD_SAMPLES = 200
SYNTH_CHUNK = 16  # utterances per fresh worker process
TEXT_SHARD_LINES = 1000
PARAGRAPH_CHARS = 800


class BuildError(RuntimeError):
    """The corpus cannot be built (missing package, non-empty output, too little text); one-line message."""


@dataclass(frozen=True)
class Verse:
    book: str
    chapter: int
    verse: int
    text: str


def read_kjv() -> list[Verse]:
    """All 31,102 verses, in canonical order, from the Debian `bible` tool."""
    if shutil.which("bible") is None:
        raise BuildError(f"the KJV text needs the Debian package bible-kjv; install it with: {BIBLE_INSTALL}")
    listing = subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    verses, book, chapter = [], "", 0
    for line in listing.splitlines():
        if match := re.fullmatch(r"\s+(\d+) (.+)", line):
            verses.append(Verse(book, chapter, int(match[1]), " ".join(match[2].split())))
        elif match := re.fullmatch(r"(\S.*) (\d+)", line):
            book, chapter = match[1], int(match[2])
    if len(verses) < 30000:
        raise BuildError(f"`bible` listed only {len(verses)} verses; reinstall with: {BIBLE_INSTALL}")
    return verses


def split_books(verses: list[Verse]) -> dict[str, list[Verse]]:
    """Held-out books, then every third other book for speech and the rest for text; verses occurring in the
    held-out text are dropped from speech and text, so the held-out slice is unseen in both."""
    books = list(dict.fromkeys(v.book for v in verses))
    heldout = [v for v in verses if v.book in HELDOUT_BOOKS]
    seen = "\n".join(v.text for v in heldout)
    spoken = {b for i, b in enumerate(b for b in books if b not in HELDOUT_BOOKS) if i % 3 == 1}
    parts: dict[str, list[Verse]] = {"speech": [], "text": [], "heldout": heldout}
    for v in verses:
        if v.book not in HELDOUT_BOOKS and v.text not in seen:
            parts["speech" if v.book in spoken else "text"].append(v)
    return parts


def chapters(verses: list[Verse]) -> list[list[Verse]]:
    """Verses grouped by (book, chapter), in order."""
    groups: dict[tuple[str, int], list[Verse]] = {}
    for v in verses:
        groups.setdefault((v.book, v.chapter), []).append(v)
    return list(groups.values())


def _ref(verses: list[Verse]) -> str:
    first, last = verses[0], verses[-1]
    return f"{first.book} {first.chapter}:{first.verse}" + (f"-{last.verse}" if last.verse != first.verse else "")


def paragraphs(verses: list[Verse]) -> list[tuple[str, str]]:
    """(text, ref) paragraphs: consecutive verses of one chapter, up to ~PARAGRAPH_CHARS characters."""
    out = []
    for chapter in chapters(verses):
        group: list[Verse] = []
        for v in chapter:
            if group and sum(len(g.text) + 1 for g in group) + len(v.text) > PARAGRAPH_CHARS:
                out.append((" ".join(g.text for g in group), _ref(group)))
                group = []
            group.append(v)
        out.append((" ".join(g.text for g in group), _ref(group)))
    return out


def _pieces(text: str, max_words: int) -> list[str]:
    """Cut text longer than max_words at sentence/clause marks, then commas, then anywhere; re-join greedily."""
    for pattern in (r"(?<=[.;:?!])\s+", r"(?<=,)\s+"):
        if len(text.split()) <= max_words:
            return [text]
        parts, out = re.split(pattern, text), []
        for part in parts:
            if out and len(out[-1].split()) + len(part.split()) <= max_words:
                out[-1] += " " + part
            else:
                out.append(part)
        if len(out) > 1:
            return [p for part in out for p in _pieces(part, max_words)]
    words = text.split()
    return [" ".join(words[i:i + max_words]) for i in range(0, len(words), max_words)]


@dataclass(frozen=True)
class SpokenScript:
    text: str
    ref: str
    voice: str
    rate: int


def _words(pieces: list[tuple[str, Verse]]) -> int:
    return sum(len(text.split()) for text, _ in pieces)


def _word_budget(seconds: float, rate: int) -> float:
    return seconds * rate / 60 * ESPEAK_SPEEDUP


def utterances(verses: list[Verse], rng: random.Random) -> Iterator[SpokenScript]:
    """Chapters in seeded order; each utterance joins consecutive pieces of one chapter up to a seeded target
    length (within SECONDS), with a seeded voice and rate. A chapter's too-short tail joins the utterance before."""
    order = chapters(verses)
    rng.shuffle(order)
    for chapter in order:
        pieces = [(p, v) for v in chapter for p in _pieces(v.text, int(SECONDS[1] * RATES[0] / 60))]
        groups: list[tuple[list[tuple[str, Verse]], str, int]] = []
        while pieces:
            voice, rate = rng.choice(BASE_VOICES) + rng.choice(VARIANTS), rng.randint(*RATES)
            least, most, target = (_word_budget(s, rate) for s in (*SECONDS, rng.uniform(*SECONDS)))
            taken = [pieces.pop(0)]
            while pieces and (total := _words(taken + pieces[:1])) <= most and (
                    total <= target or _words(taken) < least):
                taken.append(pieces.pop(0))
            groups.append((taken, voice, rate))
        if len(groups) > 1 and _words(groups[-1][0]) < _word_budget(SECONDS[0], groups[-1][2]) and (
                _words(groups[-2][0] + groups[-1][0]) <= _word_budget(SECONDS[1], groups[-2][2])):
            groups[-2:] = [(groups[-2][0] + groups[-1][0], groups[-2][1], groups[-2][2])]
        for taken, voice, rate in groups:
            yield SpokenScript(" ".join(p for p, _ in taken), _ref([v for _, v in taken]), voice, rate)


def _write_tar(path: Path, samples: list[tuple[str, bytes, dict]]) -> None:
    """One WebDataset shard: KEY.flac then KEY.json per sample, with fixed metadata (reproducible bytes)."""
    write_tar(path, [member for key, flac, meta in samples
                     for member in ((f"{key}.flac", flac), (f"{key}.json", json.dumps(meta).encode()))])


def _speak_chunk(chunk: list[SpokenScript]) -> list[tuple[bytes, dict, float] | None]:
    """(flac, json, seconds) per utterance, None where espeak could not time every word. Runs in a fresh process:
    espeak-ng keeps its pitch-flutter phase across calls, so only a fresh engine makes the audio depend on the
    chunk alone (not on what ran before, nor on worker scheduling)."""
    out: list[tuple[bytes, dict, float] | None] = []
    for utt in chunk:
        try:
            synth = espeak.synthesize(utt.text, utt.voice, utt.rate)
        except ValueError:
            out.append(None)
            continue
        flac = io.BytesIO()
        soundfile.write(flac, synth.samples, synth.sample_rate, format="FLAC", subtype="PCM_16")
        meta = {"text": utt.text, "words": [{"word": w.word, "start": w.start, "end": w.end} for w in synth.words],
                "voice": utt.voice, "rate": utt.rate, "ref": utt.ref}
        out.append((flac.getvalue(), meta, synth.seconds))
    return out


def speak(scripts: Iterable[SpokenScript]) -> Iterator[tuple[bytes, dict, float] | None]:
    """`_speak_chunk` results in script order, computed by fresh worker processes a few chunks ahead."""
    context = multiprocessing.get_context("forkserver")  # children fork from a server that never ran espeak
    context.set_forkserver_preload([__name__])
    workers = min(4, os.cpu_count() or 1)
    stream = iter(scripts)
    chunks = iter(lambda: list(itertools.islice(stream, SYNTH_CHUNK)), [])
    pool = ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1)
    try:
        pending = deque(pool.submit(_speak_chunk, c) for c in itertools.islice(chunks, 2 * workers))
        while pending:
            results = pending.popleft().result()
            pending.extend(pool.submit(_speak_chunk, c) for c in itertools.islice(chunks, 1))
            yield from results
    finally:
        pool.shutdown(cancel_futures=True)


def write_speech(out: Path, verses: list[Verse], seconds: float, rng: random.Random) -> dict:
    """Synthesize utterances into `out/speech/shard-NNNNNN.tar` until `seconds` of audio; returns the counts."""
    (out / "speech").mkdir(parents=True)
    counts = {"samples": 0, "seconds": 0.0, "words": 0, "shards": 0, "skipped": 0, "voices": set()}
    shard: list[tuple[str, bytes, dict]] = []

    def flush() -> None:
        _write_tar(out / "speech" / f"shard-{counts['shards']:06d}.tar", shard)
        counts["shards"] += 1
        shard.clear()

    bar = tqdm(total=seconds, unit="s", desc="speech", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}]")
    with bar, closing(speak(utterances(verses, rng))) as spoken:
        for result in spoken:
            if result is None:
                counts["skipped"] += 1
                continue
            flac, meta, duration = result
            shard.append((f"{counts['shards']:06d}-{counts['samples']:06d}", flac, meta))
            counts["samples"] += 1
            counts["seconds"] += duration
            counts["words"] += len(meta["words"])
            counts["voices"].add(meta["voice"])
            bar.update(min(duration, seconds - bar.n))
            if len(shard) == SPEECH_SHARD_SAMPLES:
                flush()
            if counts["seconds"] >= seconds:
                break
    if shard:
        flush()
    counts["seconds"] = round(counts["seconds"], 3)
    counts["voices"] = sorted(counts["voices"])
    return counts


def write_jsonl_zst(path: Path, lines: list[str]) -> None:
    data = "".join(json.dumps({"text": line}) + "\n" for line in lines).encode()
    path.write_bytes(zstandard.ZstdCompressor(level=10).compress(data))


def build_demo_corpus(out: Path, minutes: float = 20.0, seed: int = 0, vocab_size: int = 2048) -> dict:
    """Build the whole corpus into an empty or new directory `out`; returns the manifest (also written)."""
    if out.exists() and any(out.iterdir()):
        raise BuildError(f"{out} is not empty; give a new or empty --out directory")
    rate = espeak.sample_rate()  # fail fast, before any work, when libespeak-ng is missing
    parts = split_books(read_kjv())
    most = sum(len(v.text.split()) for v in parts["speech"]) / (RATES[1] / 60 * ESPEAK_SPEEDUP) / 60
    if not 0 < minutes <= most:
        raise BuildError(f"--minutes must be in (0, {most:.0f}] (what the speech books give), got {minutes:g}")
    out.mkdir(parents=True, exist_ok=True)
    speech = write_speech(out, parts["speech"], minutes * 60, random.Random(seed))

    texts = [text for text, _ in paragraphs(parts["text"])]
    (out / "text").mkdir()
    for shard, begin in enumerate(range(0, len(texts), TEXT_SHARD_LINES)):
        write_jsonl_zst(out / "text" / f"shard-{shard:06d}.jsonl.zst", texts[begin:begin + TEXT_SHARD_LINES])
    heldout = paragraphs(parts["heldout"])
    (out / "heldout").mkdir()
    (out / "heldout" / "text.jsonl").write_text(
        "".join(json.dumps({"text": text, "ref": ref}) + "\n" for text, ref in heldout))
    splits = {}
    for split, books in SPLIT_BOOKS.items():
        verses = [v for v in parts["heldout"] if v.book in books]
        counts = write_speech(out / split, verses, minutes * 60 * SPLIT_SHARE, random.Random(f"{seed}|{split}"))
        split_texts = [text for text, _ in paragraphs(verses)]
        (out / split / "text").mkdir()
        write_jsonl_zst(out / split / "text" / "shard-000000.jsonl.zst", split_texts)
        splits[split] = {"books": list(books), "speech": counts, "text_lines": len(split_texts)}

    ranks = train_bpe(texts, vocab_size)
    write_ranks(ranks, out / "tokenizer.tiktoken")
    units = {"file": "units.safetensors", **train_units([str(out / "speech" / "*.tar")], UNITS,
                                                         str(out / "units.safetensors"), minutes, seed, SkipCounter())}
    manifest = {
        "layout": LAYOUT, "seed": seed, "minutes": minutes, "splits": splits,
        "speech": speech | {"sample_rate": rate, "rates": list(RATES), "shard_samples": SPEECH_SHARD_SAMPLES},
        "text": {"lines": len(texts), "chars": sum(map(len, texts)), "shards": -(-len(texts) // TEXT_SHARD_LINES)},
        "heldout": {"lines": len(heldout), "chars": sum(len(t) for t, _ in heldout)},
        "tokenizer": {"file": "tokenizer.tiktoken", "ranks": len(ranks), "vocab_size": vocab_size},
        "units": units,
        "sources": [SOURCE | {"speech_books": list(dict.fromkeys(v.book for v in parts["speech"])),
                              "text_books": list(dict.fromkeys(v.book for v in parts["text"])),
                              "heldout_books": list(HELDOUT_BOOKS)}],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
