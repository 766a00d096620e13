"""HellaSwag (rowanz/hellaswag `data/hellaswag_{train,val,test}.jsonl`) to evaluation items.

A record is `{"ind", "activity_label", "ctx_a", "ctx_b", "ctx", "split", "split_type", "endings": [4 strings],
"label": int, "source_id"}`; the test split has no label (its items are skipped, counted). The context is `ctx`
(= ctx_a + " " + ctx_b), or ctx_a and ctx_b joined when `ctx` is absent. WikiHow markup ("[title]", "[step]",
"[header]") is removed and bare punctuation joined to the word before, so every word can be spoken and timed.
Context and endings are spoken separately, so every ending is scored against the same context audio.
"""

import json
import re
from pathlib import Path

from lst_train.data.skips import SkipCounter
from lst_train.corpora.convert_items import ConvertOptions, finish


def clean(text: str) -> str:
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\s+([^\w\s]+)(?=\s|$)", r"\1", " " + text)  # "word ," -> "word,"
    return " ".join(text.split())


def _record(obj, where: str) -> tuple[str, list[str], int]:
    """(id, [context, *endings], label) of one jsonl record; raises ValueError naming what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    label, endings = obj.get("label"), obj.get("endings")
    if isinstance(label, str) and label.isdigit():
        label = int(label)
    if not isinstance(label, int) or isinstance(label, bool):
        raise ValueError("no 'label' (the test split has none)")
    if not (isinstance(endings, list) and len(endings) >= 2 and all(isinstance(e, str) for e in endings)
            and 0 <= label < len(endings)):
        raise ValueError("'endings' must be a list of strings that 'label' indexes")
    context = obj.get("ctx") or f"{obj.get('ctx_a', '')} {obj.get('ctx_b', '')}"
    return str(obj.get("ind", where)), [clean(str(context)), *map(clean, endings)], label


def convert_hellaswag(options: ConvertOptions, skips: SkipCounter) -> list[dict]:
    records = []
    with open(options.source, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if options.limit is not None and len(records) >= options.limit:
                break
            if not line.strip():
                continue
            where = f"{options.source}:{number}"
            try:
                record = _record(json.loads(line), where)
            except ValueError as err:  # json.JSONDecodeError is a ValueError
                skips.add("invalid_json", where, str(err))
                continue
            if not all(record[1]):
                skips.add("missing_text", where, "an empty context or ending")
                continue
            records.append(record)
    return finish(Path(options.out), records, options, skips)
