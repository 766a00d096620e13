"""`lst-train data build-demo-eval --out DIR`: a spoken StoryCloze-like set from held-out KJV text.

Context = consecutive verses of a chapter of the held-out books (which no demo-corpus shard contains); the right
ending is the next verse; the wrong endings are verses of other chapters. Every segment is spoken by espeak-ng
(one seeded voice and rate per item) with word timings. Writes `storycloze_2way.jsonl`, `storycloze_4way.jsonl`
(the format of lst_train.evaluation.items) and `audio/`.
"""

import json
import random
from pathlib import Path

from tqdm import tqdm

from lst_train.corpora.demo_corpus import (BASE_VOICES, RATES, BuildError, SpokenScript, chapters, read_kjv, speak,
                                        split_books)

ROLES = ("context", "right", "wrong0", "wrong1", "wrong2")


def build_demo_eval(out: Path, n_items: int = 100, seed: int = 0, context_verses: int = 3) -> dict:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BuildError(f"{out} is not empty: choose a new --out")
    (out / "audio").mkdir(parents=True)
    candidates = [c for c in chapters(split_books(read_kjv())["heldout"]) if len(c) > context_verses]
    rng = random.Random(seed)
    texts, scripts = [], []
    for i in range(n_items):
        chapter = rng.choice(candidates)
        start = rng.randrange(len(chapter) - context_verses)
        others = [rng.choice(rng.choice([c for c in candidates if c is not chapter])).text for _ in range(3)]
        segments = [" ".join(v.text for v in chapter[start: start + context_verses]),
                    chapter[start + context_verses].text, *others]
        voice, rate = rng.choice(BASE_VOICES), rng.randint(*RATES)
        texts.append(segments)
        scripts += [SpokenScript(text, f"{i}-{role}", voice, rate) for text, role in zip(segments, ROLES)]
    spoken = list(tqdm(speak(scripts), total=len(scripts), desc="speaking", unit="segment"))
    two_way, four_way = [], []
    for i, segments in enumerate(texts):
        results = spoken[i * len(ROLES): (i + 1) * len(ROLES)]
        if any(r is None for r in results):
            continue  # espeak could not time every word of a segment: drop the item
        entries = {}
        for role, text, (flac, meta, _) in zip(ROLES, segments, results):
            name = f"audio/{i:05d}-{role}.flac"
            (out / name).write_bytes(flac)
            entries[role] = {"text": text, "audio": name, "words": meta["words"]}
        for endings_roles, target in ((ROLES[1:3], two_way), (ROLES[1:], four_way)):
            order = list(endings_roles)
            rng.shuffle(order)
            target.append({"id": f"kjv-{i}", "context": entries["context"],
                           "endings": [entries[r] for r in order], "label": order.index("right")})
    for name, items in (("storycloze_2way.jsonl", two_way), ("storycloze_4way.jsonl", four_way)):
        (out / name).write_text("".join(json.dumps(item) + "\n" for item in items))
    return {"items": len(two_way), "dropped": n_items - len(two_way), "seed": seed}
