"""StoryCloze and TopicStoryCloze to evaluation items, from the spoken release or from the StoryCloze CSV.

Spoken release (slp-rl/SpokenStoryCloze, Hassid et al. 2023: sStoryCloze and tStoryCloze zips, one flat folder
`sSC/` or `tSC/` each): per story number N, two whole spoken stories (four context sentences + one ending, one
single-speaker TTS file each) named `N_*.wav`, with their text in `N_*.txt` beside them. Published loaders pair the
files by N and take the first of a pair as the right story; we take the one whose name says `correct` (and not
`incorrect`), falling back to sorted-name order when neither says. Our items need the context and the endings as
separate audio, so each story is cut at a pause: among its longest pauses (sentence ends), the one nearest the
boundary estimated from the text (context share of the characters, of the voiced time). The context audio is the
right story's part before its cut, each ending the part after its own story's cut; the context text is the two
stories' common word prefix up to its last sentence end. A pair whose two cuts disagree in time (the context is the
same speech in both) is skipped as 'unsplit_audio'.

StoryCloze CSV (cloze_test_{val,test}__spring2016 / winter2018): columns InputStoryid, InputSentence1-4,
RandomFifthSentenceQuiz1, RandomFifthSentenceQuiz2, AnswerRightEnding (1 or 2); spoken by espeak-ng (or --no-tts).
"""

import csv
import random
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile

from lst_train.data.skips import SkipCounter
from lst_train.corpora.convert_items import ConvertError, ConvertOptions, finish, shuffled, write_items

CSV_COLUMNS = ("InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4", "RandomFifthSentenceQuiz1",
               "RandomFifthSentenceQuiz2", "AnswerRightEnding")
FRAME_SECONDS = 0.01
MIN_PAUSE_SECONDS = 0.1
SILENCE_DB = -40.0  # a frame this far below the file's loudest frame is silence
CUT_TOLERANCE_SECONDS = 0.5  # the two stories' cuts (same context speech) may differ by this much


def pauses(samples: np.ndarray, rate: int) -> tuple[list[tuple[int, int]], int, int]:
    """Interior silent runs (start, end sample) of at least MIN_PAUSE_SECONDS, and the first/last voiced sample."""
    hop = max(int(rate * FRAME_SECONDS), 1)
    n = len(samples) // hop
    if n == 0:
        return [], 0, 0
    rms = np.sqrt(np.mean(samples[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    voiced = rms > rms.max() * 10 ** (SILENCE_DB / 20) if rms.max() > 0 else np.zeros(n, bool)
    frames = np.flatnonzero(voiced)
    if len(frames) == 0:
        return [], 0, 0
    first, last = frames[0], frames[-1]
    runs, start = [], None
    for i in range(first, last + 1):
        if not voiced[i] and start is None:
            start = i
        elif voiced[i] and start is not None:
            if (i - start) * FRAME_SECONDS >= MIN_PAUSE_SECONDS:
                runs.append((start * hop, i * hop))
            start = None
    return runs, first * hop, (last + 1) * hop


def cut_point(samples: np.ndarray, rate: int, fraction: float) -> int | None:
    """Middle of the sentence pause nearest `fraction` of the voiced span, or None when the story has no pause."""
    runs, first, last = pauses(samples, rate)
    if not runs:
        return None
    longest = max(end - start for start, end in runs)
    expected = first + fraction * (last - first)
    candidates = [(start + end) // 2 for start, end in runs if end - start >= longest / 2]
    return min(candidates, key=lambda mid: abs(mid - expected))


def _context_words(a: list[str], b: list[str]) -> int:
    """Words of the shared context: the common prefix up to its last sentence end (endings often start alike)."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    ends = [i + 1 for i in range(n) if re.search(r"[.!?][\"')]*$", a[i])]
    return ends[-1] if ends else 0


def _stories(folder: Path) -> dict[int, list[Path]]:
    groups: dict[int, list[Path]] = defaultdict(list)
    for wav in folder.glob("*.wav"):
        if match := re.fullmatch(r"(\d+)_.*", wav.stem):
            groups[int(match[1])].append(wav)
    if not groups:
        raise ConvertError(f"{folder} has no N_*.wav stories: pass the sSC/ or tSC/ folder of the spoken "
                           "StoryCloze release")
    return groups


def _right_wrong(wavs: list[Path]) -> tuple[Path, Path]:
    def role(path: Path) -> int:  # 0 right, 1 wrong, 2 unmarked
        name = path.stem.lower()
        return 1 if "incorrect" in name else 0 if "correct" in name else 2
    right, wrong = sorted(wavs, key=lambda p: (role(p), p.name))
    return right, wrong


def _read(wav: Path, where: str, skips: SkipCounter) -> tuple[np.ndarray, int, str] | None:
    """Mono samples, rate and text of one spoken story; None (counted) when either is missing or unreadable."""
    try:
        samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as err:
        skips.add("unreadable_audio", where, str(err).splitlines()[0] if str(err) else "")
        return None
    text_file = wav.with_suffix(".txt")
    text = " ".join(text_file.read_text(encoding="utf-8", errors="replace").split()) if text_file.exists() else ""
    if not text:
        skips.add("missing_text", where, f"no text in {text_file.name}")
        return None
    return samples.mean(axis=1), rate, text


def _release_item(number: int, wavs: list[Path], out: Path, skips: SkipCounter) -> dict | None:
    where = f"story {number}"
    if len(wavs) != 2:
        skips.add("missing_audio", where, f"{len(wavs)} wav files, expected a right and a wrong story")
        return None
    stories = [_read(wav, where, skips) for wav in _right_wrong(wavs)]
    if None in stories:
        return None
    (right, rate, right_text), (wrong, wrong_rate, wrong_text) = stories
    words, wrong_words = right_text.split(), wrong_text.split()
    shared = _context_words(words, wrong_words)
    if not 0 < shared < min(len(words), len(wrong_words)):
        skips.add("missing_text", where, "the two stories share no context or have no distinct endings")
        return None
    context_text = " ".join(words[:shared])
    cuts = [cut_point(samples, r, len(context_text) / len(text))
            for samples, r, text in ((right, rate, right_text), (wrong, wrong_rate, wrong_text))]
    if None in cuts or abs(cuts[0] / rate - cuts[1] / wrong_rate) > CUT_TOLERANCE_SECONDS:
        skips.add("unsplit_audio", where, f"no consistent context/ending pause (cuts {cuts})")
        return None
    parts = {"context": (right[: cuts[0]], rate, context_text),
             "right": (right[cuts[0]:], rate, " ".join(words[shared:])),
             "wrong": (wrong[cuts[1]:], wrong_rate, " ".join(wrong_words[shared:]))}
    segments = []
    for role, (audio, sample_rate, text) in parts.items():
        name = f"audio/{number:06d}-{role}.wav"
        soundfile.write(out / name, audio, sample_rate, subtype="PCM_16")
        segments.append({"text": text, "audio": name})
    return {"id": str(number), "context": segments[0], "endings": segments[1:], "label": 0}


def _from_release(options: ConvertOptions, skips: SkipCounter) -> list[dict]:
    rng = random.Random(options.seed)
    items = []
    for number, wavs in sorted(_stories(options.source).items()):
        if options.limit is not None and len(items) >= options.limit:
            break
        item = _release_item(number, wavs, options.out, skips)
        if item is not None:
            item["endings"], item["label"] = shuffled(rng, item["endings"], 0)
            items.append(item)
    write_items(options.out, items)
    return items


def _from_csv(options: ConvertOptions, skips: SkipCounter) -> list[dict]:
    records = []
    with open(options.source, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConvertError(f"{options.source} lacks columns {missing}: pass a StoryCloze cloze_test CSV "
                               "(the training ROCStories CSV has no endings to choose from)")
        for number, row in enumerate(reader, 2):
            if options.limit is not None and len(records) >= options.limit:
                break
            where = f"{options.source}:{number}"
            texts = [" ".join((row[c] or "").split()) for c in CSV_COLUMNS[:6]]
            if not all(texts) or (row["AnswerRightEnding"] or "").strip() not in ("1", "2"):
                skips.add("missing_text", where, "an empty sentence or an AnswerRightEnding other than 1 or 2")
                continue
            records.append((row.get("InputStoryid") or str(number), [" ".join(texts[:4]), *texts[4:]],
                            int(row["AnswerRightEnding"]) - 1))
    return finish(options.out, records, options, skips)


def convert_storycloze(options: ConvertOptions, skips: SkipCounter) -> list[dict]:
    return _from_release(options, skips) if Path(options.source).is_dir() else _from_csv(options, skips)
