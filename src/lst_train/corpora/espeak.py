"""Minimal ctypes binding to libespeak-ng: text -> float32 mono samples + one (start, end) per transcript word.

Word timings come from the synthesis callback's PHONEME events (sample-accurate positions). espeak fuses some
word groups ("in the") into one WORD event; their phonemes are split between the words by each word's phoneme
count from `espeak_TextToPhonemes`, so every whitespace-separated word of the text gets its own span.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from functools import cache

import numpy as np

INSTALL_HINT = "apt-get install -y espeak-ng"
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS
_PHONEME_EVENTS_DONT_EXIT = 0x0001 | 0x8000  # espeakINITIALIZE_PHONEME_EVENTS | espeakINITIALIZE_DONT_EXIT
_EV_LIST_END, _EV_WORD, _EV_PHONEME = 0, 1, 7
_RATE = 1  # espeakRATE parameter
_UTF8_ENDPAUSE = 0x1 | 0x1000  # espeakCHARS_UTF8 | espeakENDPAUSE
_POS_CHARACTER = 1
_PHONEME_SEPARATOR = ord("|") << 8  # TextToPhonemes: ascii names separated by '|'


class EspeakMissing(RuntimeError):
    """libespeak-ng cannot be loaded or initialised."""


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class Synthesis:
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    words: list[WordTiming]

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


class _Espeak:
    """The process-wide libespeak-ng instance (the library keeps global state, so one per process)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as err:
            raise EspeakMissing(f"libespeak-ng not found ({err}); install it with: {INSTALL_HINT}") from None
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        self.sample_rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, None, _PHONEME_EVENTS_DONT_EXIT)
        if self.sample_rate <= 0:
            raise EspeakMissing(f"espeak_Initialize failed; reinstall with: {INSTALL_HINT}")
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[tuple[int, int, bytes]] = []  # (sample, anchor text position, phoneme name)
        self._anchor = -1
        self._callback = _Callback(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, count: int, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        i = 0
        while events[i].type != _EV_LIST_END:
            ev = events[i]
            if ev.type == _EV_WORD and ev.length > 0:
                self._anchor = ev.text_position - 1
            elif ev.type == _EV_PHONEME:  # `sample` is the exact sample index behind `audio_position` (ms)
                self._phonemes.append((ev.sample, self._anchor, ev.id.split(b"\0")[0]))
            i += 1
        return 0

    def set_voice(self, voice: str, rate: int) -> None:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices=en`)")
        self.lib.espeak_SetParameter(_RATE, rate, 0)

    def run(self, text: str) -> tuple[np.ndarray, list[tuple[int, int, bytes]]]:
        """Raw synthesis: int16 samples and (sample, anchor char offset, name) per PHONEME event."""
        self._chunks, self._phonemes, self._anchor = [], [], -1
        data = text.encode()
        buffer = ctypes.create_string_buffer(data)
        if self.lib.espeak_Synth(buffer, len(data) + 1, 0, _POS_CHARACTER, 0, _UTF8_ENDPAUSE, None, None) != 0:
            raise RuntimeError(f"espeak_Synth failed on {text[:60]!r}")
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._phonemes

    def phoneme_count(self, word: str) -> int:
        """Number of phonemes espeak gives `word` on its own with the current voice."""
        pointer = ctypes.c_char_p(word.encode())
        names: list[str] = []
        while pointer.value:
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), 1, _PHONEME_SEPARATOR)
            names += (out or b"").decode(errors="replace").replace(" ", "|").split("|")
        return sum(1 for n in names if n.strip("'\",%=_"))


@cache
def _engine() -> _Espeak:
    return _Espeak()


def sample_rate() -> int:
    """espeak-ng's output rate (22050 Hz for its own voices)."""
    return _engine().sample_rate


def _word_owner(text: str, words: list[str]) -> np.ndarray:
    """Index of the word each character belongs to (spaces go to the next word)."""
    owner = np.zeros(len(text) + 1, dtype=np.int64)
    cursor = 0
    for index, word in enumerate(words):
        begin = text.index(word, cursor)
        owner[cursor:begin + len(word)] = index
        cursor = begin + len(word)
    owner[cursor:] = len(words) - 1
    return owner


def _split_group(phonemes: list[int], counts: list[int]) -> list[list[int]]:
    """Share a fused group's phoneme starts among its words, proportionally to their own phoneme counts."""
    total, bounds, acc = max(sum(counts), 1), [0], 0
    for count in counts:
        acc += count
        bounds.append(round(acc * len(phonemes) / total))
    return [phonemes[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def phonemes(text: str, voice: str = "en-us") -> list[bytes]:
    """The phonemes espeak-ng speaks `text` with (pauses left out), in order: equal lists sound alike."""
    engine = _engine()
    engine.set_voice(voice, 175)
    _, events = engine.run(text)
    return [name for _, _, name in sorted(events, key=lambda event: event[0]) if not name.startswith(b"_")]


def synthesize(text: str, voice: str = "en-us", rate: int = 175) -> Synthesis:
    """Speak `text` with an espeak-ng voice (e.g. "en" (British), "en-us+f3") at `rate` words per minute.

    Returns float32 samples and one WordTiming per whitespace-separated word of `text`, in order, non-overlapping,
    inside the audio. Raises ValueError when some word got no audio (e.g. a bare punctuation token).
    espeak-ng keeps its pitch-flutter phase across calls, so the output depends slightly on what this process
    synthesized before: the same sequence of calls in a fresh process gives identical samples and timings.
    """
    engine = _engine()
    engine.set_voice(voice, rate)
    audio, events = engine.run(text)
    words = text.split()
    owner = _word_owner(text, words)
    # Each phoneme (except pauses "_", "_:") belongs to the word its last WORD event pointed at.
    by_word: dict[int, list[int]] = {}
    ordered = sorted(range(len(events)), key=lambda k: events[k][0])
    for k in ordered:
        _, anchor, name = events[k]
        if not name.startswith(b"_"):
            by_word.setdefault(int(owner[max(anchor, 0)]), []).append(k)
    anchors = sorted(by_word)
    spans: dict[int, list[int]] = {}
    for a, b in zip(anchors, anchors[1:] + [len(words)]):
        first = 0 if a == anchors[0] else a  # words before the first WORD event join the first group
        group = list(range(first, b))
        counts = [engine.phoneme_count(words[w]) for w in group] if len(group) > 1 else [1]
        spans.update(zip(group, _split_group(by_word[a], counts)))
    position = {k: i for i, k in enumerate(ordered)}
    timings, previous_end = [], 0
    for index, word in enumerate(words):
        members = spans.get(index)
        after = position[members[-1]] + 1 if members else 0
        start = events[members[0]][0] if members else -1
        end = events[ordered[after]][0] if after < len(ordered) else len(audio)
        if not previous_end <= start < end <= len(audio):
            raise ValueError(f"espeak gave word {index} {word!r} no valid span in {text[:60]!r}")
        previous_end = end
        timings.append(WordTiming(word, round(start / engine.sample_rate, 5), round(end / engine.sample_rate, 5)))
    samples = audio.astype(np.float32) / 32768.0
    return Synthesis(samples, engine.sample_rate, timings)
