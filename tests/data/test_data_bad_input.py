"""Every kind of bad input is skipped and counted under its reason; good samples around it still arrive."""

import io
import json
import os
import random

import numpy as np
import pytest
import soundfile

from lst_train.config import load_config
from lst_train.config.data import SourceConfig

from helpers import RECIPES
from helpers.data import (audio_sample, reader_stream, transcript, wav_bytes, write_jsonl, write_tar,
                          write_tokenizer)


def _wav(audio: np.ndarray, rate: int = 16000, subtype: str = "FLOAT") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _json(words, text="some words here") -> bytes:
    return json.dumps({"text": text, "words": words}).encode()


def _bad_speech_samples(rng):
    """(key, files, expected skip reason or None for good samples that must survive)."""
    words, duration = transcript(rng, 6)
    good = audio_sample(rng, 6)
    nan_audio = np.full(16000, 0.1, dtype=np.float32)
    nan_audio[100] = np.nan
    shifted = [dict(w) for w in words]
    return [
        ("a-good", good, None),
        ("b-stereo-44k", {"wav": wav_bytes(duration, rate=44100, channels=2, seed=1), "json": _json(words)}, None),
        ("c-odd-rate", {"wav": wav_bytes(duration, rate=11025, seed=2), "json": _json(words)}, None),
        ("d-empty", {"wav": _wav(np.zeros(0, dtype=np.float32)), "json": _json(words)}, "empty_audio"),
        ("e-silent", {"wav": _wav(np.zeros(32000, dtype=np.float32)), "json": _json(words)}, "silent_audio"),
        ("f-nan", {"wav": _wav(nan_audio), "json": _json(words[:1])}, "nonfinite_audio"),
        ("g-long", {"wav": wav_bytes(12.0, seed=3), "json": _json(words)}, "audio_too_long"),
        ("h-garbage", {"flac": b"not audio at all", "json": _json(words)}, "unreadable_audio"),
        ("i-no-json", {"wav": good["wav"]}, "missing_json"),
        ("j-bad-json", {"wav": good["wav"], "json": b"{not json"}, "invalid_json"),
        ("k-not-utf8", {"wav": good["wav"], "json": b'{"text": "\xff\xfe"}'}, "invalid_utf8"),
        ("l-negative", {"wav": good["wav"], "json": _json([{"word": "a", "start": -0.5, "end": 0.2}])},
         "invalid_words"),
        ("m-reversed", {"wav": good["wav"], "json": _json([{"word": "a", "start": 0.9, "end": 0.3}])},
         "invalid_words"),
        ("n-overlap", {"wav": good["wav"], "json": _json([{"word": "a", "start": 0.1, "end": 0.9},
                                                          {"word": "b", "start": 0.4, "end": 1.2}])},
         "invalid_words"),
        ("o-outside", {"wav": good["wav"], "json": _json([{"word": "a", "start": 0.1, "end": 99.0}])},
         "invalid_words"),
        ("p-empty-transcript", {"wav": good["wav"], "json": _json([], text="")}, "empty_transcript"),
        ("p2-no-timings", {"wav": good["wav"], "json": _json([], text="a transcript")}, "no_word_timings"),
        ("q-units-range", {"units.json": json.dumps({"units": [1, 99999], "frame_rate": 25,
                                                     "words": shifted}).encode()}, "invalid_units"),
        ("r-good-units", {"units.json": json.dumps({"units": [5] * int(duration * 25), "frame_rate": 25,
                                                    "words": words}).encode()}, None),
    ]


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    rng = random.Random(0)
    samples = _bad_speech_samples(rng)
    write_tar(root / "speech-0.tar", [(k, f) for k, f, _ in samples])
    # A truncated tar: its second sample's audio is cut off mid-member.
    good_tar = write_tar(root / "speech-1.tar", [("a-good", audio_sample(rng, 5)), ("b-cut", audio_sample(rng, 5))])
    data = good_tar.read_bytes()
    good_tar.write_bytes(data[: len(data) // 2 + 700])
    write_tar(root / "speech-2.tar", [("a-good", audio_sample(rng, 4))])
    lines = [json.dumps({"text": "a fine line of text"}).encode(), b"{broken", json.dumps({"txt": "x"}).encode(),
             b'{"text": "\xff"}', json.dumps({"text": "   "}).encode(), json.dumps({"text": "another line"}).encode()]
    write_jsonl(root / "text-0.jsonl", lines)
    zst = write_jsonl(root / "text-1.jsonl.zst", lines[:1] * 5)
    zst.write_bytes(zst.read_bytes()[:-4])  # a truncated zstd frame
    write_tokenizer(root / "tok.tiktoken")
    return root, samples


def _stream(root, max_seconds=8.0):
    cfg = load_config(RECIPES / "debug_cpu.yaml", [f"data.tokenizer={root / 'tok.tiktoken'}",
                                                   f"data.codec.max_seconds={max_seconds}", "data.seq_units=32"])
    cfg.data.sources = [SourceConfig(kind="speech", path=str(root / "speech-*.tar")),
                        SourceConfig(kind="text", path=str(root / "text-*.jsonl*"))]
    return cfg, reader_stream(cfg)


def _one_epoch(stream):
    pieces = []
    while min(s.epoch for s in stream.sources) == 0:
        pieces.append(stream.next_piece())
    return pieces


def test_every_bad_input_is_skipped_and_counted(bad_corpus):
    root, samples = bad_corpus
    _, stream = _stream(root)
    pieces = _one_epoch(stream)
    skipped = stream.skips.as_dict()
    expected = {}
    for _, _, reason in samples:
        if reason:
            expected[reason] = expected.get(reason, 0) + 1
    for reason, count in expected.items():
        assert skipped.get(reason, 0) >= count, (reason, skipped)
    assert skipped["unreadable_member"] + skipped["truncated_shard"] >= 1  # the cut tar
    assert skipped["truncated_shard"] >= 2  # the cut tar and the cut zstd stream
    assert skipped["missing_text"] >= 2 and skipped["invalid_json"] >= 2 and skipped["invalid_utf8"] >= 2
    good_speech = 3 + 1 + 1 + 1  # a-good, b-stereo, c-odd-rate, r-units; speech-1 a-good; speech-2 a-good
    assert stream.mixture.documents[0] >= good_speech
    assert len(pieces) == sum(stream.mixture.documents)


def test_resampled_and_downmixed_audio_keeps_its_duration(bad_corpus):
    root, samples = bad_corpus
    cfg, stream = _stream(root)
    _, files, _ = next(s for s in samples if s[0] == "b-stereo-44k")
    from lst_train.data.shards import RawRecord
    from lst_train.data.utterances import decode_record

    decoded = decode_record(RawRecord("x", "b", files), cfg.data.codec, stream.sources[0].codec, stream.tokenizer.vocab)
    assert decoded.audio.ndim == 1, "downmixed to mono"
    seconds = soundfile.info(io.BytesIO(files["wav"])).duration
    assert abs(len(decoded.audio) / 24000 - seconds) < 1e-3, "resampled to 24 kHz, same duration"
    utterance = decoded.utterance(stream.tokenizer.codec().encode(decoded.audio), 12.5)
    assert abs(utterance.seconds - seconds) <= 1 / 12.5 + 1e-6


def test_a_shard_that_vanishes_mid_run_is_counted(bad_corpus, tmp_path):
    root, _ = bad_corpus
    for name in ("speech-0.tar", "speech-2.tar", "tok.tiktoken"):
        os.link(root / name, tmp_path / name)
    write_jsonl(tmp_path / "text-0.jsonl", [json.dumps({"text": "hello there"}).encode()])
    _, stream = _stream(tmp_path)
    os.unlink(tmp_path / "speech-2.tar")
    _one_epoch(stream)
    assert stream.skips.as_dict()["missing_shard"] >= 1
    assert stream.mixture.documents[0] >= 4  # speech-0's good samples still arrive


def test_a_source_with_nothing_readable_stops_with_a_reason_instead_of_hanging(tmp_path):
    write_tar(tmp_path / "speech-0.tar", [("a", {"wav": b"junk", "json": b"{}"})])
    write_jsonl(tmp_path / "text-0.jsonl", [b"{broken"])
    write_tokenizer(tmp_path / "tok.tiktoken")
    _, stream = _stream(tmp_path)
    with pytest.raises(RuntimeError, match="no usable record"):
        for _ in range(10):
            stream.next_piece()
