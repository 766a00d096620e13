"""Audio bytes -> validated mono float32 at the codec's sample rate (decode, downmix, resample)."""

import io

import numpy as np
import soundfile
import soxr

from lst_train.data.skips import SkipSample

AUDIO_EXTENSIONS = ("flac", "wav", "ogg")
# Headers are checked before any sample is read: a header may claim anything, and the read allocates what it claims.
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64


def decode_audio(data: bytes | None, where: str, target_rate: int, max_seconds: float,
                 silence_threshold: float) -> np.ndarray:
    """Decode any rate / channel count; raise SkipSample for unreadable, empty, non-finite, silent or too long."""
    if data is None:
        raise SkipSample("unreadable_member", where)
    try:
        info = soundfile.info(io.BytesIO(data))
        if not (0 < info.samplerate <= MAX_SAMPLE_RATE and 0 < info.channels <= MAX_CHANNELS):
            raise SkipSample("unreadable_audio", where, f"implausible header: {info.samplerate} Hz, "
                                                        f"{info.channels} channels")
        if info.frames / info.samplerate > max_seconds:
            raise SkipSample("audio_too_long", where, f"{info.frames / info.samplerate:.1f} s > {max_seconds} s")
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError, TypeError) as err:
        raise SkipSample("unreadable_audio", where, str(err).splitlines()[0] if str(err) else "") from None
    if audio.shape[0] == 0:
        raise SkipSample("empty_audio", where)
    if not np.isfinite(audio).all():
        raise SkipSample("nonfinite_audio", where)
    mono = audio.mean(axis=1)
    if np.abs(mono).max() < silence_threshold:
        raise SkipSample("silent_audio", where)
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate, quality="HQ").astype(np.float32)
    return mono
