"""`lst-train data pack` / `data align` on real speech: layouts in, shards + index out, bad inputs counted, timings
the loader uses."""

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from helpers import ASSETS, REPO
from helpers.data import wav_bytes
from lst_train.config.data import CodecConfig
from lst_train.data.ingest.pack import align_shards, pack_corpus
from lst_train.data.ingest.plan import PackError
from lst_train.data.ingest.sample_builder import PackOptions
from lst_train.data.shards import tar_records
from lst_train.data.skips import SkipCounter, SkipSample
from lst_train.data.speech_units import KMeansUnitCodec, train_units
from lst_train.data.utterances import decode_record, parse_words
from lst_train.vocab import Vocab

ALIGN = PackOptions(align="pocketsphinx")
TEXTS = {"0880": "HE WAS NOT AN ILL DISPOSED YOUNG MAN", "0930": "HE MIGHT EVEN HAVE BEEN MADE AMIABLE HIMSELF"}


def _samples(out: Path) -> dict[str, dict]:
    """Every sample of every shard under out: key -> {ext: bytes}, refusing a key seen twice."""
    found = {}
    for shard in sorted(out.glob("*.tar")):
        for record in tar_records(str(shard), SkipCounter()):
            assert record.name not in found, f"{record.name} is in two shards"
            found[record.name] = record.files
    return found


def _audio(name: str) -> tuple[np.ndarray, int]:
    return soundfile.read(ASSETS / name, dtype="float32")


def _write(path: Path, audio: np.ndarray, rate: int, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio, rate, format=fmt)


def _messy_tree(root: Path) -> Path:
    """A LibriSpeech tree with what real corpora contain: other rates, stereo, mp3, and broken files."""
    chapter = root / "7" / "11"
    clip, rate = _audio("0880.flac")
    other, _ = _audio("0930.wav")
    _write(chapter / "7-11-0001.flac", clip, rate, "FLAC")
    stereo = soxr.resample(np.stack([other, other * 0.5], axis=1), rate, 44100)
    _write(chapter / "7-11-0002.wav", stereo, 44100, "WAV")
    _write(chapter / "7-11-0003.mp3", other, rate, "MP3")
    _write(chapter / "7-11-0004.flac", clip, rate, "FLAC")          # a word the dictionary lacks
    _write(chapter / "7-11-0005.wav", np.zeros(16000, np.float32), rate, "WAV")  # silent
    (chapter / "7-11-0006.flac").write_bytes(b"not audio")        # unreadable
    _write(chapter / "7-11-0007.wav", clip[:800], rate, "WAV")      # 50 ms
    _write(chapter / "7-11-0008.flac", clip, rate, "FLAC")          # no transcript line
    _write(chapter / "7-11-0010.flac", clip, rate, "FLAC")          # a transcript line that is not UTF-8
    _write(chapter / "7-11-0011.wav", np.zeros(0, np.float32), rate, "WAV")  # no samples
    _write(chapter / "7-11-0012.wav", np.tile(clip, 60), rate, "WAV")  # 3 minutes: over --max-seconds
    lines = [f"7-11-0001 {TEXTS['0880']}", f"7-11-0002 {TEXTS['0930']}", f"7-11-0003 {TEXTS['0930']}",
             "7-11-0004 HE WAS NOT AN XYZZYQ DISPOSED YOUNG MAN", "7-11-0005 SILENCE", "7-11-0006 BROKEN",
             "7-11-0007 SHORT", "7-11-0009 NO AUDIO FOR THIS LINE", "7-11-0011 EMPTY", "7-11-0012 LONG"]
    text = ("\n".join(lines) + "\n").encode() + b"7-11-0010 CAF\xe9\n"
    (chapter / "7-11.trans.txt").write_bytes(text)
    return root


def test_librispeech_tree_is_packed_aligned_and_read_by_the_loader(tmp_path):
    out = tmp_path / "packed"
    result = subprocess.run([sys.executable, "-m", "lst_train", "data", "pack", str(REPO / "tests/assets/librispeech"),
                             "--out", str(out), "--align", "pocketsphinx"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "packed 2 utterances" in result.stdout and "coverage 100.0%" in result.stdout
    index = json.loads((out / "index.json").read_text())
    assert (index["utterances"], index["words"], index["speakers"], index["skipped"]) == (2, 16, 1, {})
    assert index["word_timings"] == {"given": 0, "aligned": 2, "none": 0, "coverage": 1.0}
    samples = _samples(out)
    assert sorted(samples) == ["0-1-0880", "0-1-0930"]
    assert samples["0-1-0880"]["flac"] == (ASSETS / "0880.flac").read_bytes()  # copied byte for byte
    for key, asset in (("0-1-0880", "0880.json"), ("0-1-0930", "0930.json")):
        meta = json.loads(samples[key]["json"])
        assert meta["text"] == TEXTS[key[-4:]] and meta["speaker"] == "0"
        reference = json.loads((ASSETS / asset).read_text())["words"]
        assert [w["word"] for w in meta["words"]] == meta["text"].split()
        starts = np.array([w["start"] for w in meta["words"]]) - [w["start"] for w in reference]
        assert np.abs(starts).max() < 0.06, starts
        parse_words(meta, meta["seconds"], key)  # what the loader checks


def test_bad_inputs_are_skipped_counted_and_explained_and_formats_are_kept_or_converted(tmp_path):
    tree = _messy_tree(tmp_path / "tree")
    index = pack_corpus([str(tree)], tmp_path / "out", ALIGN, shard_bytes=10**9)
    assert index["skipped"] == {"audio_too_long": 1, "audio_too_short": 2, "invalid_utf8": 1, "missing_audio": 1,
                                "missing_transcript": 1, "silent_audio": 1, "unalignable": 1, "unreadable_audio": 1}
    assert "xyzzyq" in index["skip_examples"]["unalignable"][0]
    samples = _samples(tmp_path / "out")
    assert sorted(samples) == ["7-11-0001", "7-11-0002", "7-11-0003"]
    assert samples["7-11-0002"]["wav"] == (tree / "7/11/7-11-0002.wav").read_bytes()
    info = soundfile.info(io.BytesIO(samples["7-11-0003"]["flac"]))  # mp3 re-encoded as FLAC
    assert (info.format, info.samplerate) == ("FLAC", 16000)
    stereo = json.loads(samples["7-11-0002"]["json"])
    assert len(stereo["words"]) == 8 and stereo["seconds"] == pytest.approx(3.29, abs=0.01)

    kept = pack_corpus([str(tree)], tmp_path / "kept", PackOptions(align="pocketsphinx", keep_unaligned=True),
                       shard_bytes=10**9)
    assert "unalignable" not in kept["skipped"]
    assert kept["word_timings"] == {"given": 0, "aligned": 3, "none": 1, "coverage": 0.75}
    meta = json.loads(_samples(tmp_path / "kept")["7-11-0004"]["json"])
    assert "words" not in meta and meta["text"].startswith("HE WAS NOT AN XYZZYQ")
    with pytest.raises(SkipSample) as err:  # the loader counts it instead of training on it
        parse_words(meta, meta["seconds"], "7-11-0004")
    assert err.value.reason == "no_word_timings"


def test_manifests_and_folders_keep_given_timings_and_speakers(tmp_path):
    clip_dir = tmp_path / "clips"
    clip_dir.mkdir()
    shutil.copy(ASSETS / "0880.flac", clip_dir / "a.flac")
    shutil.copy(ASSETS / "0930.wav", clip_dir / "b.wav")
    given = json.loads((ASSETS / "0880.json").read_text())
    lines = [json.dumps({"audio": "clips/a.flac", "text": given["text"], "words": given["words"], "speaker": 4}),
             "{broken json", json.dumps({"audio": "clips/b.wav"}),
             json.dumps({"audio": "clips/gone.flac", "text": "gone"}),
             json.dumps({"id": "second", "audio": "clips/b.wav", "text": TEXTS["0930"].lower()})]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "cv.tsv").write_text("client_id\tpath\tsentence\nspk9\tclips/b.wav\tHe might even have been "
                                     "made amiable himself.\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(ASSETS / "0930.wav", folder / "c.wav")
    (folder / "c.txt").write_text(TEXTS["0930"] + "\n")
    shutil.copy(ASSETS / "0880.flac", folder / "untranscribed.flac")
    index = pack_corpus([str(tmp_path / "m.jsonl"), str(tmp_path / "cv.tsv"), str(folder), str(tmp_path / "m.jsonl")],
                        tmp_path / "out", ALIGN, shard_bytes=10**9)
    assert index["skipped"] == {"duplicate_key": 2, "invalid_manifest": 4, "missing_audio": 2,
                                "missing_transcript": 1}
    assert index["word_timings"] == {"given": 1, "aligned": 3, "none": 0, "coverage": 1.0}
    assert index["speakers"] == 2
    samples = _samples(tmp_path / "out")
    assert sorted(samples) == ["c", "clips-a", "clips-b", "second"]
    assert json.loads(samples["clips-a"]["json"])["words"] == given["words"]
    assert json.loads(samples["clips-b"]["json"])["words"][-1]["word"] == "himself."


def test_shards_are_size_bounded_deterministic_and_shuffled_only_on_request(tmp_path):
    clip = (ASSETS / "0880.flac").read_bytes()
    lines = []
    for i in range(12):
        (tmp_path / f"u{i:02d}.flac").write_bytes(clip)
        lines.append(json.dumps({"audio": f"u{i:02d}.flac", "text": TEXTS["0880"]}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines))
    runs = {}
    for name, seed in (("a", None), ("b", None), ("shuffled", 3)):
        pack_corpus([str(tmp_path / "m.jsonl")], tmp_path / name, PackOptions(), shard_bytes=3 * len(clip) + 8000,
                    shuffle_seed=seed)
        runs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).glob("*.tar"))}
    assert len(runs["a"]) == 4 and all(len(data) <= 3 * len(clip) + 8000 for data in runs["a"].values())
    assert runs["a"] == runs["b"]
    order = [key for name in sorted(runs["a"]) for key in _samples_of(runs["a"][name])]
    shuffled = [key for name in sorted(runs["shuffled"]) for key in _samples_of(runs["shuffled"][name])]
    assert order == sorted(order) and shuffled != order and sorted(shuffled) == order


def _samples_of(tar_bytes: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return list(dict.fromkeys(m.name.split(".")[0] for m in tar))


def test_a_directory_packed_from_other_inputs_or_options_is_refused(tmp_path):
    source = str(REPO / "tests/assets/librispeech")
    pack_corpus([source], tmp_path / "out", PackOptions(), shard_bytes=10**9)
    with pytest.raises(PackError, match="options were"):
        pack_corpus([source], tmp_path / "out", PackOptions(max_seconds=30.0), shard_bytes=10**9)
    tree = tmp_path / "tree"
    shutil.copytree(source, tree)  # the links become files
    pack_corpus([str(tree)], tmp_path / "copy", PackOptions(), shard_bytes=10**9)
    (tree / "0" / "1" / "0-1-0930.wav").write_bytes(wav_bytes(2.0))  # a file re-encoded between runs
    with pytest.raises(PackError, match="inputs of 1 shard"):
        pack_corpus([str(tree)], tmp_path / "copy", PackOptions(), shard_bytes=10**9)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("not ours")
    with pytest.raises(PackError, match="not empty"):
        pack_corpus([source], tmp_path / "other", PackOptions(), shard_bytes=10**9)


def test_data_align_times_shards_packed_without_timings(tmp_path):
    pack_corpus([str(REPO / "tests/assets/librispeech")], tmp_path / "plain", PackOptions(), shard_bytes=10**9)
    plain = _samples(tmp_path / "plain")
    assert all("words" not in json.loads(s["json"]) for s in plain.values())
    result = subprocess.run([sys.executable, "-m", "lst_train", "data", "align", str(tmp_path / "plain" / "*.tar"),
                             "--out", str(tmp_path / "aligned")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "aligned 2 utterances" in result.stdout and "coverage 100.0%" in result.stdout
    aligned = _samples(tmp_path / "aligned")
    assert sorted(aligned) == sorted(plain)
    for key, files in aligned.items():
        assert files["flac" if "flac" in files else "wav"] == plain[key]["flac" if "flac" in files else "wav"]
        meta = json.loads(files["json"])
        assert len(meta["words"]) == 8 and meta["speaker"] == "0"
    again = align_shards([str(tmp_path / "aligned" / "*.tar")], tmp_path / "realigned",
                         PackOptions(align="pocketsphinx", realign=True))
    assert again["word_timings"]["aligned"] == 2
    kept = align_shards([str(tmp_path / "aligned" / "*.tar")], tmp_path / "kept", PackOptions(align="pocketsphinx"))
    assert kept["word_timings"] == {"given": 2, "aligned": 0, "none": 0, "coverage": 1.0}


def test_extra_pronunciations_make_a_word_alignable_and_a_bad_one_stops_at_start_up(tmp_path):
    tree = _messy_tree(tmp_path / "tree")
    words = tmp_path / "extra.dict"
    words.write_text(";;; words CMUdict lacks\nXYZZYQ  Z IH Z IY K\n")
    index = pack_corpus([str(tree)], tmp_path / "out", PackOptions(align="pocketsphinx", dictionary=str(words)),
                        shard_bytes=10**9)
    assert "unalignable" not in index["skipped"] and index["word_timings"]["aligned"] == 4
    assert index["options"]["dictionary_sha256"]
    words.write_text("xyzzyq  Z IH Z QQ K\n")
    with pytest.raises(PackError, match="line 1: phones 'Z IH Z QQ K'"):
        pack_corpus([str(tree)], tmp_path / "bad", PackOptions(align="pocketsphinx", dictionary=str(words)),
                    shard_bytes=10**9)
    assert not (tmp_path / "bad").exists()


def test_units_stored_at_pack_time_are_what_the_loader_would_encode(tmp_path):
    source = str(REPO / "tests/assets/librispeech")
    pack_corpus([source], tmp_path / "plain", PackOptions(), shard_bytes=10**9)
    units_file = str(tmp_path / "units.safetensors")
    train_units([str(tmp_path / "plain" / "*.tar")], 8, units_file, 10.0, 0, SkipCounter())
    pack_corpus([source], tmp_path / "units", PackOptions(align="pocketsphinx", units=units_file), shard_bytes=10**9)
    vocab = Vocab(text_size=256, speech_codebook_size=8)
    codec = KMeansUnitCodec(units_file)
    for record in tar_records(str(tmp_path / "units" / "shard-000000.tar"), SkipCounter()):
        stored = json.loads(record.files["units.json"])
        assert stored["frame_rate"] == 25 and stored["words"] == json.loads(record.files["json"])["words"]
        as_units = decode_record(record, CodecConfig(kind="units"), lambda: None, vocab)
        encoded = decode_record(record, CodecConfig(kind="kmeans", weights=units_file), lambda: codec, vocab)
        assert encoded.frames is None and encoded.audio is not None  # kmeans encodes the audio, ignoring units
        np.testing.assert_array_equal(as_units.frames, codec.encode(encoded.audio))
        assert as_units.words == encoded.words and as_units.times == encoded.times
    with pytest.raises(PackError, match="--units .*train-units"):
        pack_corpus([source], tmp_path / "bad", PackOptions(units=str(tmp_path / "plain" / "index.json")),
                    shard_bytes=10**9)


def test_a_sample_key_past_the_ustar_name_limit_is_packed_deterministically_and_read(tmp_path):
    shutil.copy(ASSETS / "0880.flac", tmp_path / "a.flac")
    key = "LibriLight-large-10001-" + "the_adventures_of_a_very_long_title_" * 4
    assert len(key) >= 150
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": key, "audio": "a.flac", "text": TEXTS["0880"]}) + "\n")
    shards = []
    for name in ("a", "b"):
        index = pack_corpus([str(tmp_path / "m.jsonl")], tmp_path / name, PackOptions(), shard_bytes=10**9)
        assert index["skipped"] == {}
        shards.append(b"".join(p.read_bytes() for p in sorted((tmp_path / name).glob("*.tar"))))
    assert shards[0] == shards[1]
    skips = SkipCounter()
    [record] = [r for shard in (tmp_path / "a").glob("*.tar") for r in tar_records(str(shard), skips)]
    assert record.name == key and sorted(record.files) == ["flac", "json"] and skips.as_dict() == {}
