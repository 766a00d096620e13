"""Raw speech records -> utterances: speech frames, frame rate and words mapped to frames, all validated."""

import json
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from lst_train.data.audio import AUDIO_EXTENSIONS, decode_audio
from lst_train.config.data import CodecConfig
from lst_train.data.shards import RawRecord, decode_utf8
from lst_train.data.skips import SkipSample
from lst_train.vocab import Vocab

# Timings may disagree with the audio length by rounding: tolerate this much (seconds) before calling them wrong.
TIME_TOLERANCE = 0.05


@dataclass
class Utterance:
    """A speech sample ready for sequence building."""

    key: str
    frames: np.ndarray
    """int64 [n_frames, n_codebooks] codes."""
    frame_rate: float
    words: list[str]
    word_frames: list[tuple[int, int]]
    """[start, end) frame range of each word (may be empty for words shorter than a frame)."""

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.frame_rate


def load_json(data: bytes | None, where: str) -> dict:
    """A member's JSON object; raises SkipSample (unreadable_member, invalid_utf8, invalid_json)."""
    text = decode_utf8(data, where)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as err:  # also ints over 4300 digits, nesting past the stack
        raise SkipSample("invalid_json", where, str(err)) from None
    if not isinstance(obj, dict):
        raise SkipSample("invalid_json", where, "not a JSON object")
    return obj


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_words(obj: dict, duration: float, where: str) -> tuple[list[str], list[tuple[float, float]]]:
    """Validate `words` (and `text`): ordered, non-negative, non-reversed, non-overlapping, inside the audio."""
    words = obj.get("words")
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise SkipSample("invalid_json", where, "'text' is not a string")
    if not words and not text.strip():
        raise SkipSample("empty_transcript", where)
    if words is None or words == []:
        raise SkipSample("no_word_timings", where,
                         "a transcript without word timings: `lst-train data align` (or pack with --align) adds them")
    if not isinstance(words, list):
        raise SkipSample("invalid_words", where, "'words' must be a non-empty list of {word, start, end}")
    names, times, previous_end = [], [], 0.0
    for i, item in enumerate(words):
        if not (isinstance(item, dict) and isinstance(item.get("word"), str) and item["word"].strip()
                and _number(item.get("start")) and _number(item.get("end"))):
            raise SkipSample("invalid_words", where, f"word {i} needs a non-empty 'word' and numeric 'start'/'end'")
        start, end = float(item["start"]), float(item["end"])
        if start < 0:
            raise SkipSample("invalid_words", where, f"word {i} starts at negative time {start}")
        if end < start:
            raise SkipSample("invalid_words", where, f"word {i} ends before it starts ({start} > {end})")
        if start < previous_end - TIME_TOLERANCE:
            raise SkipSample("invalid_words", where, f"word {i} overlaps the previous word")
        if end > duration + TIME_TOLERANCE:
            raise SkipSample("invalid_words", where, f"word {i} ends at {end} s, after the audio ({duration:.2f} s)")
        names.append(item["word"].strip())
        times.append((start, end))
        previous_end = end
    return names, times


def _frame(seconds: float, frame_rate: float, n_frames: int) -> int:
    return min(max(round(seconds * frame_rate), 0), n_frames)


def _units(record: RawRecord, codebook_size: int, n_codebooks: int) -> tuple[dict, np.ndarray, float]:
    obj = load_json(record.files["units.json"], record.key)
    if n_codebooks != 1:
        raise SkipSample("invalid_units", record.key, f"units have 1 codebook, the vocabulary {n_codebooks}")
    units, rate = obj.get("units"), obj.get("frame_rate")
    if not (isinstance(units, list) and units and all(isinstance(u, int) and 0 <= u < codebook_size for u in units)):
        raise SkipSample("invalid_units", record.key, f"'units' must be a non-empty list of ints in [0, {codebook_size})")
    if not (_number(rate) and rate > 0):
        raise SkipSample("invalid_units", record.key, "'frame_rate' must be a positive number")
    return obj, np.asarray(units, dtype=np.int64)[:, None], float(rate)


@dataclass
class DecodedRecord:
    """A speech record checked and decoded, waiting for its codes (audio) or already holding them (units)."""

    key: str
    words: list[str]
    times: list[tuple[float, float]]
    audio: np.ndarray | None = None
    """float32 samples at the codec's rate, to be encoded (None for units)."""
    frames: np.ndarray | None = None
    frame_rate: float = 0.0

    def utterance(self, frames: np.ndarray | None = None, frame_rate: float | None = None) -> Utterance:
        """The utterance, from the given codes (audio) or the record's own units."""
        frames = self.frames if frames is None else frames
        rate = frame_rate or self.frame_rate
        n = len(frames)
        word_frames = [(_frame(s, rate, n), max(_frame(e, rate, n), _frame(s, rate, n))) for s, e in self.times]
        return Utterance(self.key, frames, rate, self.words, word_frames)


def decode_record(record: RawRecord, codec_cfg: CodecConfig, get_codec: Callable, vocab: Vocab) -> DecodedRecord:
    """Check and decode one speech record (audio at the codec's rate, or units); raises SkipSample.

    `get_codec()` returns the codec (built on first use) or None when data.codec.kind is 'units'. A sample with
    both audio and KEY.units.json (`data pack --units`) is read as units only under kind 'units'.
    """
    if record.defect:
        raise SkipSample(record.defect[0], record.key, record.defect[1])
    audio_ext = next((ext for ext in AUDIO_EXTENSIONS if ext in record.files), None)
    codec = get_codec() if audio_ext is not None else None
    if "units.json" in record.files and codec is None:
        obj, frames, rate = _units(record, vocab.speech_codebook_size, vocab.n_codebooks)
        words, times = parse_words(obj, len(frames) / rate, record.key)
        return DecodedRecord(record.key, words, times, frames=frames, frame_rate=rate)
    if audio_ext is None or "json" not in record.files:
        raise SkipSample("missing_json", record.key, f"members {sorted(record.files)}: need audio + KEY.json")
    if codec is None:
        raise SkipSample("invalid_units", record.key, "data.codec.kind=units but the sample has no KEY.units.json")
    obj = load_json(record.files["json"], record.key)
    audio = decode_audio(record.files[audio_ext], record.key, codec.sample_rate, codec_cfg.max_seconds,
                         codec_cfg.silence_threshold)
    words, times = parse_words(obj, len(audio) / codec.sample_rate, record.key)
    return DecodedRecord(record.key, words, times, audio=audio)
