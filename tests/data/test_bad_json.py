"""JSON that fails to parse in other ways than a syntax error (an int over Python's 4300-digit limit, nesting past
the recursion limit) is skipped and counted like any bad JSON, in the loader and in packing."""

import json
import random

import pytest

from lst_train.config import load_config
from lst_train.config.data import SourceConfig
from lst_train.data.ingest.inputs import manifest_inputs
from lst_train.data.ingest.sample_builder import _units_json
from lst_train.data.skips import SkipCounter
from lst_train.data.text_tokenizer import TextStats, read_training_texts
from lst_train.evaluation.items import read_items

from helpers import RECIPES
from helpers.data import reader_stream, units_sample, wav_bytes, write_jsonl, write_tar, write_tokenizer

BAD = {"huge int": b'{"text": "hello", "id": ' + b"1" * 5000 + b"}", "deep nesting": b"[" * 100000}


@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
@pytest.mark.parametrize("kind", ["text", "speech"])
def test_the_loader_skips_and_counts_it(tmp_path, bad, kind):
    if kind == "text":
        path = write_jsonl(tmp_path / "a.jsonl", [b'{"text": "fine line"}', BAD[bad], b'{"text": "another"}'])
    else:
        good = units_sample(random.Random(0), 5, 2048)
        path = write_tar(tmp_path / "a.tar", [("k0", good), ("k1", {"units.json": BAD[bad]}), ("k2", good)])
    cfg = load_config(RECIPES / "debug_cpu.yaml", [f"data.tokenizer={write_tokenizer(tmp_path / 'tok.tiktoken')}",
                                                   "data.codec.kind=units"])
    cfg.data.sources = [SourceConfig(kind=kind, path=str(path), sequence="speech" if kind == "speech" else "")]
    stream = reader_stream(cfg)
    for _ in range(4):  # two passes
        stream.next_piece()
    assert stream.skips.as_dict() == {"invalid_json": 2}


@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
def test_packing_skips_and_counts_it(tmp_path, bad):
    (tmp_path / "a.wav").write_bytes(wav_bytes(1.0))
    good = {"audio": "a.wav", "text": "hello"}
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n".join([json.dumps(good).encode(), BAD[bad],
                                     json.dumps(good | {"id": "b", "words": BAD[bad].decode()}).encode()]))
    skips = SkipCounter()
    assert [u.key for u in manifest_inputs(manifest, skips)] == ["a"]
    assert skips.as_dict() == {"invalid_manifest": 2}
    # a sample's old units file that does not parse is kept as it is, for the loader to count
    assert _units_json({"text": "hello"}, None, 12.5, BAD[bad]) == BAD[bad]


def test_tokenizer_training_texts_skip_and_count_it(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [b'{"text": "fine"}', *BAD.values()])
    stats = TextStats()
    assert list(read_training_texts([path], stats)) == ["fine"] and stats.bad_lines == 2


def test_evaluation_items_skip_and_count_it(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\n".join(BAD.values()))
    skips = SkipCounter()
    assert read_items(str(path), skips) == [] and skips.as_dict() == {"invalid_json": 2}
