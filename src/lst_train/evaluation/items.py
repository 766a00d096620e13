"""Evaluation items: jsonl, one `{"id", "context": SEGMENT, "endings": [SEGMENT, ...], "label"}` per line, where a
SEGMENT is `{"text": str, "audio": path relative to the file, "words": [{"word", "start", "end"}, ...]}` (audio
needed for spoken settings, words only for aligned patching). An item without a context (absent or null) is a
pair-preference item (sWUGGY / sBLIMP style): each candidate is scored from the start of a row. Bad lines are
skipped, counted and logged."""

import json
import os
from dataclasses import dataclass, field

from lst_train.data.skips import SkipCounter


@dataclass
class Segment:
    text: str
    audio: str = ""
    """Absolute path of the audio file ('' when the item has none)."""
    words: list[dict] = field(default_factory=list)


@dataclass
class EvalItem:
    id: str
    context: Segment | None
    """None for a pair-preference item: the candidates are scored with nothing before them."""
    endings: list[Segment]
    label: int


def _segment(obj, base: str) -> Segment:
    if not isinstance(obj, dict) or not isinstance(obj.get("text", ""), str):
        raise ValueError("a segment must be an object with a string 'text'")
    audio = obj.get("audio") or ""
    words = obj.get("words") or []
    if not isinstance(words, list):
        raise ValueError("'words' must be a list")
    return Segment(obj.get("text", ""), os.path.join(base, audio) if audio else "", words)


def read_items(path: str, skips: SkipCounter | None = None) -> list[EvalItem]:
    """Every valid item of the file; invalid lines are counted in `skips` under 'invalid_json'."""
    skips = skips if skips is not None else SkipCounter()
    base = os.path.dirname(os.path.abspath(path))
    items = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                endings = [_segment(e, base) for e in obj["endings"]]
                label = obj["label"]
                if not (isinstance(label, int) and 0 <= label < len(endings) and len(endings) >= 2):
                    raise ValueError("'label' must index one of at least 2 endings")
                context = None if obj.get("context") is None else _segment(obj["context"], base)
                items.append(EvalItem(str(obj.get("id", number)), context, endings, label))
            except (ValueError, KeyError, TypeError, RecursionError) as err:
                skips.add("invalid_json", f"{path}:{number}", str(err))
    return items
