"""pocketsphinx forced alignment: word boundaries against espeak-ng speech whose word timings are known."""

import numpy as np
import pytest
import soundfile
import soxr

from helpers import REPO
from lst_train.corpora import espeak
from lst_train.data.ingest.aligner import SAMPLE_RATE, PocketsphinxAligner
from lst_train.data.skips import SkipSample

SENTENCES = [
    "he was not an ill disposed young man unless to be rather cold hearted",
    "and the lord said unto moses stretch out thine hand over the sea",
    "the quick brown fox jumps over the lazy dog near the river bank",
    "she sells sea shells by the sea shore every morning before breakfast",
    "in the beginning god created the heaven and the earth",
    "it was the best of times it was the worst of times",
]
VOICES = [("en-us", 175), ("en", 150), ("en-us+f3", 200), ("en-us", 130), ("en-us+m3", 160)]


@pytest.fixture(scope="module")
def aligner():
    return PocketsphinxAligner()


def _espeak_available() -> bool:
    try:
        espeak.sample_rate()
        return True
    except espeak.EspeakMissing:
        return False


@pytest.mark.skipif(not _espeak_available(), reason="libespeak-ng is not installed")
def test_median_word_boundary_error_on_espeak_speech_is_under_40_ms(aligner):
    errors, unalignable = [], 0
    for voice, rate in VOICES:
        for sentence in SENTENCES:
            speech = espeak.synthesize(sentence, voice, rate)
            audio = soxr.resample(speech.samples, speech.sample_rate, SAMPLE_RATE)
            try:
                aligned = aligner.align(audio, sentence, f"{voice}/{rate}")
            except SkipSample as err:
                assert err.reason == "unalignable"
                unalignable += 1
                continue
            assert [w.word for w in aligned] == sentence.split()
            for got, truth in zip(aligned, speech.words):
                errors += [abs(got.start - truth.start), abs(got.end - truth.end)]
    median = float(np.median(errors))
    print(f"median boundary error {median * 1000:.1f} ms over {len(errors)} boundaries; "
          f"90th percentile {np.percentile(errors, 90) * 1000:.1f} ms; unalignable {unalignable} of 30")
    assert median <= 0.040, f"median word-boundary error {median * 1000:.1f} ms > 40 ms"
    assert unalignable <= 3


def test_real_speech_aligns_with_the_transcript_as_written(aligner):
    audio, rate = soundfile.read(REPO / "tests/assets/librivox/0930.wav", dtype="float32")
    assert rate == SAMPLE_RATE
    aligned = aligner.align(audio, "He might even have been made amiable himself.", "0930")
    assert [w.word for w in aligned] == "He might even have been made amiable himself.".split()
    assert all(a.end <= b.start + 1e-9 for a, b in zip(aligned, aligned[1:]))
    assert 0.1 < aligned[0].start < 0.4 and 2.6 < aligned[-1].end <= len(audio) / rate


def test_a_word_outside_the_dictionary_or_the_audio_is_unalignable(aligner):
    audio, _ = soundfile.read(REPO / "tests/assets/librivox/0930.wav", dtype="float32")
    with pytest.raises(SkipSample, match="not in the dictionary: xyzzyq") as err:
        aligner.align(audio, "he might xyzzyq", "k")
    assert err.value.reason == "unalignable"
    with pytest.raises(SkipSample) as err:  # far more words than 3 s of speech can hold
        aligner.align(audio[:4000], " ".join(["he might even have been made amiable himself"] * 8), "k")
    assert err.value.reason == "unalignable"


def test_timings_do_not_depend_on_what_the_process_aligned_before(aligner):
    first, _ = soundfile.read(REPO / "tests/assets/librivox/0880.flac", dtype="float32")
    second, _ = soundfile.read(REPO / "tests/assets/librivox/0930.wav", dtype="float32")
    text = "he was not an ill disposed young man"
    fresh = PocketsphinxAligner().align(first, text, "a")
    aligner.align(second, "he might even have been made amiable himself", "b")
    assert aligner.align(first, text, "a") == fresh
