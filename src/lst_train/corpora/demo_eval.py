"""`lst-train data build-demo-eval --out DIR`: spoken StoryCloze-like sets and sWUGGY / sBLIMP-like pair sets from
held-out KJV text.

Stories: context = consecutive verses of a chapter of the held-out books (which no demo-corpus shard contains); the
right ending is the next verse; the wrong endings are verses of other chapters. Pairs (no context): a held-out word
against a nonword made from it by changing one inner letter (a vowel for a vowel, a consonant for a consonant, never
a word of the whole KJV), and a held-out clause against the same clause with two neighbouring words swapped. Every
segment is spoken by espeak-ng (one seeded voice and rate per item, both candidates of a pair alike) with word
timings. Writes `storycloze_2way.jsonl`, `storycloze_4way.jsonl`, `pairs_lexical.jsonl`, `pairs_syntax.jsonl` (the
format of lst_train.evaluation.items) and `audio/`.
"""

import json
import random
import re
from pathlib import Path

from tqdm import tqdm

from lst_train.corpora import espeak
from lst_train.corpora.demo_corpus import (BASE_VOICES, RATES, BuildError, SpokenScript, chapters, read_kjv, speak,
                                        split_books)

ROLES = ("context", "right", "wrong0", "wrong1", "wrong2")
VOWELS, CONSONANTS = "aeiou", "bdfgklmnprst"
CLAUSE_WORDS = (4, 9)  # words in a syntactic pair's clause


def nonword(word: str, vocabulary: set[str], voice: str, rng: random.Random) -> str | None:
    """`word` with one inner letter changed within its class (vowel/consonant), not in `vocabulary` and not spoken
    with the same phonemes by `voice`; None if no try gives one."""
    spoken = espeak.phonemes(word, voice)
    for _ in range(20):
        i = rng.randrange(1, len(word) - 1)
        pool = VOWELS if word[i] in VOWELS else CONSONANTS if word[i] in CONSONANTS else ""
        choices = [c for c in pool if c != word[i]]
        if choices:
            candidate = word[:i] + rng.choice(choices) + word[i + 1:]
            if candidate not in vocabulary and espeak.phonemes(candidate, voice) != spoken:
                return candidate
    return None


def swapped(words: list[str], rng: random.Random) -> list[str] | None:
    """`words` with two different neighbouring words swapped; None if every neighbour pair is equal."""
    positions = [i for i in range(len(words) - 1) if words[i].lower() != words[i + 1].lower()]
    if not positions:
        return None
    i = rng.choice(positions)
    return words[:i] + [words[i + 1], words[i]] + words[i + 2:]


def pair_texts(heldout: list, vocabulary: set[str], n_pairs: int, rng: random.Random) -> dict[str, list]:
    """{"lexical": [(word, nonword, voice, rate)], "syntax": [(clause, swapped clause, voice, rate)]}, n_pairs each,
    from held-out verses; clauses in lower case, so that a capital cannot give the original order away."""
    words = sorted({w for v in heldout for w in re.findall(r"\b[a-z]+\b", v.text) if 5 <= len(w) <= 9})
    clauses = [c.lower().split() for v in heldout for c in re.split(r"[,;:.?!()]", v.text)
               if CLAUSE_WORDS[0] <= len(c.split()) <= CLAUSE_WORDS[1]]
    pairs: dict[str, list] = {"lexical": [], "syntax": []}
    for word in rng.sample(words, len(words)):
        if len(pairs["lexical"]) == n_pairs:
            break
        voice, rate = rng.choice(BASE_VOICES), rng.randint(*RATES)
        if (fake := nonword(word, vocabulary, voice, rng)) is not None:
            pairs["lexical"].append((word, fake, voice, rate))
    for clause in rng.sample(clauses, len(clauses)):
        if len(pairs["syntax"]) == n_pairs:
            break
        voice, rate = rng.choice(BASE_VOICES), rng.randint(*RATES)
        if (fake := swapped(clause, rng)) is not None:
            pairs["syntax"].append((" ".join(clause), " ".join(fake), voice, rate))
    return pairs


def write_pair_sets(out: Path, pairs: dict[str, list], rng: random.Random) -> dict[str, int]:
    """Speak both candidates of every pair (one voice and rate per pair); write pairs_{kind}.jsonl; items kept."""
    scripts = [SpokenScript(text, f"{kind}-{i}-{role}", voice, rate)
               for kind, kind_pairs in pairs.items() for i, (*candidates, voice, rate) in enumerate(kind_pairs)
               for text, role in zip(candidates, ("right", "wrong"))]
    spoken = iter(tqdm(speak(scripts), total=len(scripts), desc="speaking pairs", unit="segment"))
    kept = {}
    for kind, kind_pairs in pairs.items():
        items = []
        for i, (*candidates, _, _) in enumerate(kind_pairs):
            results = [next(spoken), next(spoken)]
            if any(r is None for r in results):
                continue  # espeak could not time a candidate word by word: drop the pair
            endings = []
            for role, text, (flac, meta, _) in zip(("right", "wrong"), candidates, results):
                name = f"audio/{kind}-{i:05d}-{role}.flac"
                (out / name).write_bytes(flac)
                endings.append({"text": text, "audio": name, "words": meta["words"]})
            label = rng.randrange(2)
            items.append({"id": f"{kind}-{i}", "endings": endings if label == 0 else endings[::-1], "label": label})
        (out / f"pairs_{kind}.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
        kept[kind] = len(items)
    return kept


def build_demo_eval(out: Path, n_items: int = 100, seed: int = 0, context_verses: int = 3,
                    n_pairs: int | None = None) -> dict:
    """`n_items` stories and `n_pairs` (default 4 × n_items) pairs of each kind."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BuildError(f"{out} is not empty: choose a new --out")
    (out / "audio").mkdir(parents=True)
    verses = read_kjv()
    heldout = split_books(verses)["heldout"]
    candidates = [c for c in chapters(heldout) if len(c) > context_verses]
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
    vocabulary = {w for v in verses for w in re.findall(r"\b[a-z]+\b", v.text.lower())}
    pairs = pair_texts(heldout, vocabulary, 4 * n_items if n_pairs is None else n_pairs, rng)
    kept = write_pair_sets(out, pairs, rng)
    return {"items": len(two_way), "dropped": n_items - len(two_way), "seed": seed,
            "pairs": kept, "pairs_dropped": {kind: len(pairs[kind]) - kept[kind] for kind in pairs}}
