"""One input utterance -> the members of one shard sample (`KEY.<audio>`, `KEY.json`), validated and aligned.

Audio the loader reads (flac, wav, ogg) is copied byte for byte; other formats are re-encoded as 16-bit FLAC at
their own rate and channel count. Word timings the source gives are validated and kept; otherwise the aligner
times the transcript, or the sample is unalignable (skipped, or packed without timings when asked).
"""

import io
import json
from dataclasses import dataclass, field

import numpy as np
import soundfile

from lst_train.data.audio import decode_audio
from lst_train.data.ingest.aligner import SAMPLE_RATE as ALIGN_RATE
from lst_train.data.ingest.inputs import KEPT_AUDIO
from lst_train.data.skips import SkipSample
from lst_train.data.utterances import parse_words


@dataclass(frozen=True)
class PackOptions:
    """What `data pack` / `data align` do to every sample (part of the plan's fingerprint)."""

    align: str = "none"
    """'pocketsphinx': time the words of samples that have none; 'none': keep what the source gives."""
    keep_unaligned: bool = False
    """Pack samples the aligner cannot time without word timings instead of skipping them."""
    units: str = ""
    """A units file (`lst-train tokenizer train-units`): also store each sample's units as KEY.units.json, which
    the loader reads under data.codec.kind=units instead of encoding the audio."""
    dictionary: str = ""
    """Extra pronunciations for the aligner, a CMUdict-format file (`--dict`)."""
    realign: bool = False
    """Align every sample, replacing timings the source gives (`data align --realign`)."""
    min_seconds: float = 0.2
    """Shorter audio is skipped (audio_too_short)."""
    max_seconds: float = 120.0
    """Longer audio is skipped (audio_too_long), like the loader's data.codec.max_seconds."""
    silence_threshold: float = 1e-4
    """Audio whose peak is below this is skipped (silent_audio)."""


@dataclass
class SampleInput:
    """One sample before validation, from a source file (pack) or a shard record (align)."""

    key: str
    where: str
    """Where to look when it is skipped (a path, or shard:key)."""
    audio: bytes | None
    audio_ext: str
    meta: dict
    """The sample's JSON so far: at least 'text'; 'words', 'speaker' and other keys are kept."""
    other_members: dict[str, bytes] = field(default_factory=dict)
    """Members copied unchanged (align: e.g. KEY.units.json)."""


@dataclass
class BuiltSample:
    members: list[tuple[str, bytes]]
    """(member name, bytes) in shard order: audio, then json, then the others."""
    seconds: float
    words: int
    speaker: str | None
    timing: str
    """'given' (from the source), 'aligned', or 'none' (packed without timings)."""
    unaligned_because: str = ""
    """Why the aligner could not time it (timing 'none' under keep_unaligned)."""


def _flac(data: bytes) -> bytes:
    audio, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
    out = io.BytesIO()
    soundfile.write(out, audio, rate, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def _timings(meta: dict, given, audio: np.ndarray, seconds: float, text: str, sample: SampleInput,
             options: PackOptions, aligner) -> tuple[str, str]:
    """Set meta['words'] from the source or the aligner; returns (timing kind, why unaligned)."""
    if given:
        names, times = parse_words({"text": text, "words": given}, seconds, sample.where)
        meta["words"] = [{"word": n, "start": s, "end": e} for n, (s, e) in zip(names, times)]
        return "given", ""
    meta.pop("words", None)
    if aligner is None:
        return "none", ""
    try:
        aligned = aligner.align(audio, text, sample.where)
    except SkipSample as err:
        if not options.keep_unaligned:
            raise
        return "none", str(err)
    meta["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in aligned]
    return "aligned", ""


def _units_json(meta: dict, units: list[int] | None, frame_rate: float, old: bytes | None) -> bytes:
    """KEY.units.json: fresh units, or the sample's old units with the new timings (unparsable ones are kept as
    they are, for the loader to count)."""
    try:
        obj = {"units": units, "frame_rate": frame_rate} if units is not None else json.loads(old)
    except (ValueError, RecursionError):  # not UTF-8 or not JSON (including huge ints, deep nesting)
        return old
    if not isinstance(obj, dict):
        return old
    obj.pop("words", None)
    if "words" in meta:
        obj["words"] = meta["words"]
    return json.dumps(obj | {"text": meta["text"]}, sort_keys=True).encode()


def build_sample(sample: SampleInput, options: PackOptions, aligner, units_codec=None) -> BuiltSample:
    """Validate, align (aligner given) and encode as units (units_codec given) one sample; raises SkipSample."""
    if sample.audio is None:
        raise SkipSample("missing_audio", sample.where)
    meta = dict(sample.meta)
    text = meta.get("text") if isinstance(meta.get("text"), str) else ""
    given = meta.get("words") if not options.realign else None
    if not text.strip() and not given:
        raise SkipSample("empty_transcript", sample.where)
    try:
        info = soundfile.info(io.BytesIO(sample.audio))
    except (RuntimeError, soundfile.LibsndfileError, ValueError, TypeError) as err:
        raise SkipSample("unreadable_audio", sample.where, str(err).splitlines()[0] if str(err) else "") from None
    if info.samplerate > 0 and info.frames / info.samplerate < options.min_seconds:
        raise SkipSample("audio_too_short", sample.where, f"{info.frames / info.samplerate:.3f} s")
    aligner = aligner if not given else None
    rate = ALIGN_RATE if aligner is not None or units_codec is not None else info.samplerate
    audio = decode_audio(sample.audio, sample.where, rate, options.max_seconds, options.silence_threshold)
    seconds = len(audio) / rate
    timing, unaligned_because = _timings(meta, given, audio, seconds, text, sample, options, aligner)
    audio_ext = sample.audio_ext if sample.audio_ext in KEPT_AUDIO else "flac"
    audio_bytes = sample.audio if sample.audio_ext in KEPT_AUDIO else _flac(sample.audio)
    meta["text"] = text.strip() or " ".join(w["word"] for w in meta["words"])
    meta["seconds"] = round(seconds, 3)
    others = dict(sample.other_members)
    if units_codec is not None:
        units = units_codec.encode(audio)[:, 0].tolist()
        others["units.json"] = _units_json(meta, units, units_codec.frame_rate, None)
    elif "units.json" in others:
        others["units.json"] = _units_json(meta, None, 0.0, others["units.json"])
    members = [(f"{sample.key}.{audio_ext}", audio_bytes),
               (f"{sample.key}.json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode())]
    members += sorted((f"{sample.key}.{ext}", data) for ext, data in others.items())
    speaker = meta.get("speaker")
    return BuiltSample(members, seconds, len(meta.get("words", ())), None if speaker is None else str(speaker),
                       timing, unaligned_because)
