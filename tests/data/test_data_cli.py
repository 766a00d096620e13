"""`lst-train data inspect` and `lst-train tokenizer train` as a user runs them."""

import json
import subprocess
import sys

from helpers import RECIPES
from helpers.data import units_corpus


def test_data_inspect_prints_stats_and_a_json_last_line(tmp_path):
    corpus = units_corpus(tmp_path, n_speech_shards=2)
    (tmp_path / "speech" / "bad.tar").write_bytes(b"not a tar at all" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "lst_train", "data", "inspect", str(RECIPES / "debug_cpu.yaml"), "--batches", "4",
         f"data.sources[0].path={corpus['speech']}", f"data.sources[1].path={corpus['text']}",
         f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", "data.seq_units=64",
         "patching.strategy=aligned"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["batches"] == 4 and stats["patches"] == 4 * 4 * 64
    assert stats["tokens_per_word_patch"] > 1 and stats["tokens_per_patch_static"] is None
    assert stats["speech_token_fraction"] > 0 and stats["text_token_fraction"] > 0
    assert stats["skipped"].get("truncated_shard", 0) >= 1
    assert "tokens per patch" in result.stdout


def test_data_inspect_names_a_glob_that_matches_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lst_train", "data", "inspect", str(RECIPES / "debug_cpu.yaml"),
         f"data.sources[0].path={tmp_path}/nothing/*.tar"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "data.sources[0].path" in result.stderr


def test_a_source_with_nothing_usable_stops_with_one_line(tmp_path):
    corpus = units_corpus(tmp_path, n_speech_shards=1)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "bad.tar").write_bytes(b"not a tar at all" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "lst_train", "data", "inspect", str(RECIPES / "debug_cpu.yaml"),
         f"data.sources[0].path={tmp_path}/junk/*.tar", f"data.sources[1].path={corpus['text']}",
         f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units"], capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "no usable record" in last and "truncated_shard" in last and "Traceback" not in result.stderr
