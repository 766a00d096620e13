"""sWUGGY and sBLIMP (the ZeroSpeech 2021 release's `lexical/{dev,test}` and `syntactic/{dev,test}` folders) to
pair-preference items.

A folder holds one wav per spoken candidate and `gold.csv`: lexical rows `filename, voice, frequency, word, phones,
id, correct, length`; syntactic rows `filename, type, subtype, voice, id, correct, transcription`. `filename` names
the wav without its extension; `correct` is 1 for the word (the grammatical sentence) and 0 for its nonword (the
ungrammatical twin). Rows with the same id and voice (and type and subtype) make one item: no context, the right
candidate and its wrong ones in a seeded order. Items point at the release's wav files (absolute paths, no copy).
A group without exactly one right candidate and at least one wrong one is skipped as 'unpaired'; a missing wav as
'missing_audio'. ZeroSpeech averages a pair's score over its voices before averaging over pairs; we count every
(pair, voice) as one item, which is the same mean when every pair has the same number of voices.
"""

import csv
import random
from collections import defaultdict
from pathlib import Path

from lst_train.corpora.convert_items import ConvertError, ConvertOptions, shuffled, write_items
from lst_train.data.skips import SkipCounter

FOLDERS = {"swuggy": "lexical", "sblimp": "syntactic"}
COLUMNS = {"swuggy": ("filename", "id", "voice", "correct", "word"),
           "sblimp": ("filename", "id", "voice", "correct", "transcription", "type")}
"""Columns read from gold.csv; the fifth is the candidate's text."""


def _groups(gold: Path, benchmark: str) -> dict[tuple, list[tuple[int, dict]]]:
    """(type, subtype, id, voice) -> [(line number, row)], in file order."""
    groups = defaultdict(list)
    with open(gold, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS[benchmark] if c not in (reader.fieldnames or [])]
        if missing:
            raise ConvertError(f"{gold} lacks columns {missing}: pass the ZeroSpeech 2021 "
                               f"{FOLDERS[benchmark]}/dev or {FOLDERS[benchmark]}/test folder for {benchmark}")
        for number, row in enumerate(reader, 2):
            key = tuple((row.get(c) or "").strip() for c in ("type", "subtype", "id", "voice"))
            groups[key].append((number, row))
    return groups


def _wav(folder: Path, filename: str) -> Path:
    name = filename.strip()
    return folder / (name if name.endswith(".wav") else f"{name}.wav")


def convert_zerospeech(benchmark: str, options: ConvertOptions, skips: SkipCounter) -> list[dict]:
    folder = Path(options.source)
    gold = folder / "gold.csv"
    if not gold.is_file():
        raise ConvertError(f"{gold} not found: pass the ZeroSpeech 2021 {FOLDERS[benchmark]}/dev (or /test) folder, "
                           "where the wav files lie beside gold.csv")
    text_column = COLUMNS[benchmark][4]
    rng = random.Random(options.seed)
    items = []
    for key, rows in _groups(gold, benchmark).items():
        if options.limit is not None and len(items) >= options.limit:
            break
        where = f"{gold}:{rows[0][0]}"
        right = [row for _, row in rows if (row["correct"] or "").strip() == "1"]
        wrong = [row for _, row in rows if (row["correct"] or "").strip() == "0"]
        if len(right) != 1 or not wrong or len(right) + len(wrong) != len(rows):
            skips.add("unpaired", where, f"id {key[2]!r} voice {key[3]!r}: {len(right)} right and {len(wrong)} "
                      f"wrong of {len(rows)} candidates (need exactly one right, correct = 1 or 0)")
            continue
        candidates = right + wrong
        paths = [_wav(folder, row["filename"] or "") for row in candidates]
        absent = [path for path in paths if not path.is_file()]
        if absent:
            skips.add("missing_audio", where, f"{absent[0]} not found")
            continue
        endings = [{"text": (row[text_column] or "").strip(), "audio": str(path.resolve())}
                   for row, path in zip(candidates, paths)]
        endings, label = shuffled(rng, endings, 0)
        items.append({"id": "/".join(part for part in key if part), "endings": endings, "label": label})
    write_items(options.out, items)
    return items
