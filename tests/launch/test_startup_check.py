"""`lst-train train --check` and the launch scripts that run it once before torchrun: a bad path or a diverged run
stops with one line, not one per rank and per torchrun restart."""

import json
import os
import subprocess
import sys

import pytest

from helpers import RECIPES, REPO
from helpers.data import units_corpus
from lst_train.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return units_corpus(tmp_path_factory.mktemp("corpus"), n_speech_shards=1, samples_per_shard=4)


def _overrides(corpus, run_dir):
    return [f"data.sources[0].path={corpus['speech']}", f"data.sources[1].path={corpus['text']}",
            f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", f"run_dir={run_dir}"]


def _run(*args, env=None):
    return subprocess.run([*map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, **(env or {})})


def test_check_passes_a_good_config_and_names_each_bad_path(corpus, tmp_path, capsys):
    check = [sys.executable, "-m", "lst_train", "train", RECIPES / "debug_cpu.yaml", "--check"]
    good = _overrides(corpus, tmp_path / "run")
    result = _run(*check, *good)
    assert result.returncode == 0 and "fine" in result.stdout, result.stderr
    for bad, key in (("data.sources[1].path=nope/*.jsonl", "data.sources[1].path"),
                     ("evaluation.sets=[{name: a, path: nope.jsonl}]", "evaluation.sets[0].path"),
                     ("evaluation.validation=[{kind: text, path: nope/*.jsonl}]", "evaluation.validation[0].path")):
        assert main([str(arg) for arg in check[3:]] + [*good, bad]) == 2  # in this process: the same exit code
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"lst-train: config error: {key}: "), lines
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "diverged.json").write_text(json.dumps({"step": 7}))
    result = _run(*check, *good)
    assert result.returncode == 3 and "stopped at step 7" in result.stderr


def test_run_local_stops_before_torchrun_with_one_line(corpus, tmp_path):
    result = _run(REPO / "launch" / "run_local.sh", RECIPES / "debug_cpu.yaml", *_overrides(corpus, tmp_path / "run"),
                  "data.sources[0].path=nope/*.tar", env={"PYTHON": sys.executable, "NGPU": "2"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"lst-train: config error: data.sources[0].path: no file matches 'nope/*.tar' (cwd {REPO})"]
