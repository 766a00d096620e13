"""Offline forced alignment with pocketsphinx (PyPI `pocketsphinx`: US-English acoustic model + CMUdict bundled):
16 kHz speech + transcript -> one (start, end) per transcript token.

One search over a grammar made of the transcript (silences optional between words). The beams are far wider
than recognition's defaults: the grammar is a single path, so width is cheap, and the default beams lose the path on
clipped or synthetic speech (measured on espeak-ng speech, 2026-11-28: 13 of 30 utterances failed at default
beams, 1 of 30 at these, median boundary error 12 ms either way). An utterance whose search does not reach the
transcript's last word, or that holds a word CMUdict lacks, is unalignable; nothing is guessed.
"""

from dataclasses import dataclass

import numpy as np

from lst_train.data.ingest.text_normalization import normalize_transcript
from lst_train.data.skips import SkipSample

SAMPLE_RATE = 16000
FRAME_SECONDS = 0.01
_BEAMS = {"beam": 1e-100, "pbeam": 1e-100, "wbeam": 1e-80, "bestpath": False}


@dataclass(frozen=True)
class AlignedWord:
    word: str
    """The transcript token as written (punctuation-only neighbours attached)."""
    start: float
    end: float


class PocketsphinxAligner:
    """Word timings by forced alignment; one decoder per process (loading the model takes ~0.3 s)."""

    def __init__(self, extra_dictionary: str = ""):
        """`extra_dictionary`: a CMUdict-format file (`word PH ON EMES` per line, `;;;` comments) of words to add."""
        try:
            from pocketsphinx import Decoder
        except ImportError as err:  # a pinned requirement, but say so if an environment lacks it
            raise RuntimeError("--align pocketsphinx needs `pip install pocketsphinx==5.1.1`") from err
        self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", **_BEAMS)
        if extra_dictionary:
            self._add_words(extra_dictionary)

    def _add_words(self, path: str) -> None:
        """Add each pronunciation of the file; raises ValueError naming the first line the model cannot use."""
        with open(path, encoding="utf-8") as lines:
            entries = [(n, line.split(maxsplit=1)) for n, line in enumerate(lines, 1)
                       if line.strip() and not line.startswith(";;;")]
        for n, parts in entries:
            if len(parts) != 2:
                raise ValueError(f"line {n}: expected 'word PHONES'")
            word = parts[0].lower().split("(")[0]
            try:
                self._decoder.add_word(word, parts[1].strip(), False)  # True re-inits the search: 0.1 s a word
            except RuntimeError:
                raise ValueError(f"line {n}: phones {parts[1].strip()!r} of {word!r} are not the model's "
                                 "(CMUdict ARPAbet without stress digits, e.g. HH EY T IH TH)") from None

    def missing_words(self, words: list[str]) -> list[str]:
        """Normalised words the pronunciation dictionary lacks, in order of first use."""
        return [w for w in dict.fromkeys(words) if self._decoder.lookup_word(w) is None]

    def align(self, audio: np.ndarray, text: str, where: str) -> list[AlignedWord]:
        """Timings of `text`'s tokens in `audio` (float32 mono at 16 kHz); raises SkipSample('unalignable')."""
        tokens, token_words = normalize_transcript(text)
        flat = [w for words in token_words for w in words]
        if not flat:
            raise SkipSample("unalignable", where, "no word left after normalisation")
        missing = self.missing_words(flat)
        if missing:
            raise SkipSample("unalignable", where, f"not in the dictionary: {' '.join(missing[:10])}")
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        decoder = self._decoder
        try:
            decoder.reinit_feat()  # the feature front end keeps state across utterances: timings would depend on
            decoder.set_align_text(" ".join(flat))  # what this process aligned before (and resume would differ)
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
        except RuntimeError as err:
            raise SkipSample("unalignable", where, f"pocketsphinx: {err}") from None
        segments = [(s.start_frame, s.end_frame + 1) for s in decoder.seg() or ()
                    if not s.word.startswith(("<", "[")) and s.word != "</s>"]
        if len(segments) != len(flat):
            raise SkipSample("unalignable", where,
                             f"the search reached {len(segments)} of {len(flat)} words")
        aligned, i = [], 0
        for token, words in zip(tokens, token_words):
            first, last = segments[i], segments[i + len(words) - 1]
            aligned.append(AlignedWord(token, round(first[0] * FRAME_SECONDS, 3), round(last[1] * FRAME_SECONDS, 3)))
            i += len(words)
        return aligned
