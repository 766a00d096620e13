"""Untrusted files: unsafe tar members, decompression bombs and lying audio headers are skipped and counted without
exhausting memory (issue: faults a 32-GPU week meets, item 9)."""

import io
import json
import random
import subprocess
import sys
import tarfile
import textwrap

import pytest
import soundfile
import zstandard

from helpers.data import audio_sample, wav_bytes
from lst_train.config.data import CodecConfig
from lst_train.data.audio import decode_audio
from lst_train.data.shards import MAX_LINE_BYTES, ShardCursor, tar_records
from lst_train.data.skips import SkipCounter, SkipSample
from lst_train.data.utterances import decode_record
from lst_train.vocab import Vocab


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
            link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_samples_with_links_absolute_or_parent_paths_are_skipped_whole(tmp_path):
    good = audio_sample(random.Random(0), 3)
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as tar:
        _member(tar, "a.wav", good["wav"])
        _member(tar, "a.json", good["json"])
        _member(tar, "b.wav", good["wav"])
        _member(tar, "../../b.json", good["json"])           # would land outside an extraction directory
        _member(tar, "/etc/c.wav", good["wav"])
        _member(tar, "c.json", good["json"])
        _member(tar, "d.wav", kind=tarfile.SYMTYPE, link="/etc/passwd")
        _member(tar, "d.json", good["json"])
        _member(tar, "e.wav", good["wav"])
        _member(tar, "e.json", good["json"])
    records = list(tar_records(str(path), SkipCounter()))
    assert [r.name for r in records] == ["a", "b", "c", "d", "e"]
    assert [r.defect[0] if r.defect else None for r in records] == [None, "unsafe_member", "unsafe_member",
                                                                    "unsafe_member", None]
    assert "../../b.json" in records[1].defect[1] and "/etc/passwd" in records[3].defect[1]
    vocab = Vocab(text_size=256, speech_codebook_size=2048)
    with pytest.raises(SkipSample) as err:  # what the loader does with it
        decode_record(records[1], CodecConfig(), lambda: None, vocab)
    assert err.value.reason == "unsafe_member"


def test_a_zstd_bomb_line_is_dropped_as_it_streams_and_the_lines_after_it_are_read(tmp_path):
    compressor = zstandard.ZstdCompressor()
    line = json.dumps({"text": "after the bomb"}).encode() + b"\n"
    bomb = compressor.compress(b"{" + b" " * (MAX_LINE_BYTES * 4) + b"\n")  # 256 MiB of one line, ~8 KB packed
    path = tmp_path / "bomb.jsonl.zst"
    path.write_bytes(compressor.compress(line) + bomb + compressor.compress(line * 2))
    assert path.stat().st_size < 100_000
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path.parent)!r})
        from lst_train.data.shards import ShardCursor
        from lst_train.data.skips import SkipCounter
        def status(key):  # KB; VmHWM is this process's peak (ru_maxrss would carry the forking parent's)
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
        before = status("VmRSS")
        cursor = ShardCursor([{str(path)!r}], "text", 0, 1, "s", SkipCounter(), max_epochs=1)
        lines = [cursor.next_record() for _ in range(4)]
        print([r.defect[0] if r.defect else len(r.files["line"]) for r in lines], (status("VmHWM") - before) // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    kinds, grown_mb = result.stdout.rsplit(" ", 1)
    print(f"reading the bomb grew memory by {int(grown_mb)} MB")
    assert kinds == f"[{len(line) - 1}, 'line_too_long', {len(line) - 1}, {len(line) - 1}]"
    assert int(grown_mb) < 2 * MAX_LINE_BYTES // 2**20, f"reading the bomb grew memory by {grown_mb} MB"


def test_a_plain_jsonl_line_over_the_limit_is_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr("lst_train.data.shards.MAX_LINE_BYTES", 1000)
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"text": "ok"}\n' + b"x" * 5000 + b'\n{"text": "ok too"}')
    cursor = ShardCursor([str(path)], "text", 0, 1, "s", SkipCounter())
    records = [cursor.next_record() for _ in range(3)]
    assert [r.defect[0] if r.defect else r.files["line"] for r in records] == [
        b'{"text": "ok"}', "line_too_long", b'{"text": "ok too"}']


def _flac_with_streaminfo(rate: int | None = None, total_samples: int | None = None) -> bytes:
    """A real FLAC whose STREAMINFO header is rewritten to claim another rate or length."""
    data = bytearray(wav_bytes(1.0, fmt="FLAC"))
    assert data[:4] == b"fLaC"
    field = int.from_bytes(data[18:26], "big")  # rate 20 bits | channels-1 3 | bps-1 5 | total samples 36
    if rate is not None:
        field = (field & ((1 << 44) - 1)) | (rate << 44)
    if total_samples is not None:
        field = (field & ~((1 << 36) - 1)) | total_samples
    data[18:26] = field.to_bytes(8, "big")
    return bytes(data)


@pytest.mark.parametrize("header,reason", [
    (dict(total_samples=(1 << 36) - 1), "audio_too_long"),     # 4.3 million seconds at 16 kHz
    (dict(rate=1_000_000), "unreadable_audio"),                  # no microphone samples at 1 MHz
])
def test_audio_headers_claiming_absurd_sizes_are_skipped_before_any_sample_is_read(header, reason):
    data = _flac_with_streaminfo(**header)
    info = soundfile.info(io.BytesIO(data))
    assert info.frames == (1 << 36) - 1 or info.samplerate == 1_000_000
    with pytest.raises(SkipSample) as err:
        decode_audio(data, "k", 24000, 120.0, 1e-4)
    assert err.value.reason == reason
