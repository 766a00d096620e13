"""The offline demo corpus: espeak-ng word timings and the `data build-demo` output layout."""

import argparse
import ctypes
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import tiktoken
import tiktoken.load
import zstandard

from lst_train.cli.data import add_data_build_demo_parser
from lst_train.corpora import demo_corpus, espeak
from lst_train.data.text_tokenizer import PAT_STR

try:
    espeak.sample_rate()
except espeak.EspeakMissing as err:
    pytest.skip(f"libespeak-ng is not installed ({err})", allow_module_level=True)

SENTENCE = ("And he went in the house of the LORD, and the men of the city said unto him: "
            "Lo, we are twelve brethren; the youngest is this day with our father.")


@pytest.mark.parametrize("voice,rate", [("en-us", 175), ("en+f3", 140), ("en-gb-scotland+m3", 190)])
def test_every_word_gets_one_ordered_span_inside_the_audio(voice: str, rate: int) -> None:
    synth = espeak.synthesize(SENTENCE, voice, rate)
    assert synth.sample_rate == 22050 and synth.samples.dtype == np.float32
    assert [w.word for w in synth.words] == SENTENCE.split()  # fused groups ("in the", "of the") are split
    previous_end = 0.0
    for w in synth.words:
        assert previous_end <= w.start < w.end <= synth.seconds
        previous_end = w.end


def test_audio_energy_is_inside_word_spans() -> None:
    synth = espeak.synthesize(SENTENCE, "en-us", 160)
    x, rate = synth.samples.astype(np.float64), synth.sample_rate
    inside = np.zeros(len(x), dtype=bool)
    for w in synth.words:
        inside[round(w.start * rate):round(w.end * rate)] = True
    gap_power = np.mean(x[~inside] ** 2)
    assert (~inside).sum() > 0.2 * rate  # the pauses at punctuation and the end are gaps
    assert np.mean(x[inside] ** 2) > 100 * gap_power
    for w in synth.words:  # every word span holds speech, not silence
        assert np.mean(x[round(w.start * rate):round(w.end * rate)] ** 2) > 10 * gap_power, w


def test_long_verses_are_cut_into_pieces_that_keep_every_word() -> None:
    text = "a b c, d e f; g h i j k l m n o p q, r s t u v w x y z."
    pieces = demo_corpus._pieces(text, 6)
    assert " ".join(pieces).split() == text.split()
    assert all(1 <= len(p.split()) <= 6 for p in pieces) and len(pieces) > 1


def _build(out: Path, *options: str) -> None:
    parser = argparse.ArgumentParser()
    add_data_build_demo_parser(parser.add_subparsers())
    args = parser.parse_args(["build-demo", "--out", str(out), *options])
    args.run(args)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    _build(out, "--minutes", "0.2", "--seed", "7", "--vocab-size", "512")
    return out


def _speech_samples(out: Path) -> list[tuple[str, bytes, dict]]:
    samples = []
    for shard in sorted((out / "speech").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            assert len(names) % 2 == 0
            for flac, meta in zip(names[::2], names[1::2]):
                key = flac.removesuffix(".flac")
                assert flac == f"{key}.flac" and meta == f"{key}.json" and key.startswith(shard.stem[6:] + "-")
                samples.append((key, tar.extractfile(flac).read(), json.loads(tar.extractfile(meta).read())))
    return samples


def _text_lines(out: Path) -> list[str]:
    lines = []
    for shard in sorted((out / "text").glob("shard-*.jsonl.zst")):
        for line in zstandard.ZstdDecompressor().decompress(shard.read_bytes(), max_output_size=1 << 30).splitlines():
            lines.append(json.loads(line)["text"])
    return lines


def test_speech_shards_pair_flac_and_json_with_valid_timings(corpus: Path) -> None:
    samples = _speech_samples(corpus)
    keys = [key for key, _, _ in samples]
    assert keys == sorted(set(keys)) and len(keys) >= 1
    seconds = 0.0
    for key, flac, meta in samples:
        audio, rate = soundfile.read(io.BytesIO(flac), dtype="float32")
        assert rate == 22050 and audio.ndim == 1
        assert set(meta) >= {"text", "words", "voice", "rate"} and 140 <= meta["rate"] <= 190
        assert [w["word"] for w in meta["words"]] == meta["text"].split()
        previous_end = 0.0
        for w in meta["words"]:
            assert previous_end <= w["start"] < w["end"] <= len(audio) / rate
            previous_end = w["end"]
        seconds += len(audio) / rate
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["speech"]["samples"] == len(samples)
    assert manifest["speech"]["seconds"] == pytest.approx(seconds, abs=1e-2) and seconds >= 0.2 * 60
    assert manifest["speech"]["words"] == sum(len(meta["words"]) for _, _, meta in samples)
    assert manifest["sources"][0]["licence"].startswith("public domain")


def test_text_shards_and_heldout_are_disjoint(corpus: Path) -> None:
    text = _text_lines(corpus)
    transcripts = [meta["text"] for _, _, meta in _speech_samples(corpus)]
    heldout = [json.loads(line)["text"] for line in (corpus / "heldout" / "text.jsonl").read_text().splitlines()]
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["text"]["lines"] == len(text) and manifest["text"]["chars"] == sum(map(len, text))
    assert manifest["heldout"]["lines"] == len(heldout) > 100
    trained, held = "\n".join(text + transcripts), "\n".join(heldout)
    assert not any(line in trained for line in heldout)
    assert not any(line in held for line in text + transcripts)
    assert not set(transcripts) & set(text)


def test_heldout_loss_splits_are_spoken_held_out_books_apart_from_each_other(corpus: Path) -> None:
    trained = "\n".join(_text_lines(corpus) + [meta["text"] for _, _, meta in _speech_samples(corpus)])
    manifest = json.loads((corpus / "manifest.json").read_text())
    seen = {}
    for split, books in demo_corpus.SPLIT_BOOKS.items():
        samples, text = _speech_samples(corpus / split), _text_lines(corpus / split)
        assert samples and len(text) == manifest["splits"][split]["text_lines"] > 50
        assert {meta["ref"].rsplit(" ", 1)[0] for _, _, meta in samples} <= set(books)
        assert not any(line in trained for line in text + [meta["text"] for _, _, meta in samples])
        seen[split] = set(text)
    assert not seen["valid"] & seen["test"]


def test_tokenizer_loads_with_tiktoken(corpus: Path) -> None:
    ranks = tiktoken.load.load_tiktoken_bpe(str(corpus / "tokenizer.tiktoken"))
    assert len(ranks) == 512
    encoding = tiktoken.Encoding("demo", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens={})
    line = json.loads((corpus / "heldout" / "text.jsonl").read_text().splitlines()[0])["text"]
    ids = encoding.encode_ordinary(line)
    assert encoding.decode(ids) == line and len(ids) < len(line.encode()) / 2


def test_same_seed_same_bytes_other_seed_other_speech(corpus: Path, tmp_path: Path) -> None:
    _build(tmp_path / "again", "--minutes", "0.2", "--seed", "7", "--vocab-size", "512")
    files = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    for name in files:
        assert (corpus / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    _build(tmp_path / "other", "--minutes", "0.2", "--seed", "8", "--vocab-size", "512")
    assert [m["text"] for _, _, m in _speech_samples(tmp_path / "other")] != [
        m["text"] for _, _, m in _speech_samples(corpus)]


def test_missing_packages_and_bad_output_stop_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            corpus: Path) -> None:
    with pytest.raises(SystemExit, match=r"^lst-train: .* is not empty"):
        _build(corpus)
    monkeypatch.setattr(demo_corpus.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match=r"apt-get install -y bible-kjv$"):
        _build(tmp_path / "no-bible")

    def no_library(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    with pytest.raises(espeak.EspeakMissing, match=r"apt-get install -y espeak-ng$"):
        espeak._Espeak()
