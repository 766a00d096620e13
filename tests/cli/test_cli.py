"""The `lst-train` entry points."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import RECIPES
from lst_train.cli import data_error_line
from lst_train.data.skips import NoUsableData


def _run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_info_reports_per_stack_params_of_the_1b_recipe():
    result = _run(sys.executable, "-m", "lst_train", "info", str(RECIPES / "lst_1b.yaml"))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[2:] if line[:1].isalpha()}
    assert set(rows) >= {"encoder", "global_transformer", "decoder", "total"}
    assert 1.25e9 < int(rows["global_transformer"].replace(",", "")) < 1.35e9


def test_console_script_reports_a_bad_key_in_one_line():
    script = Path(sys.executable).with_name("lst-train")
    result = _run(str(script), "info", str(RECIPES / "debug_cpu.yaml"), "model.encoder.widht=3")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.encoder.widht" in lines[0]


def test_eval_under_torchrun_scores_on_each_process_own_gpu():
    """`torchrun ... lst-train eval`: every rank on cuda:LOCAL_RANK, not all of them on GPU 0 (no GPU needed: only the
    device chosen is checked)."""
    from lst_train.cli.evaluation import eval_device

    assert str(eval_device("cuda", "3")) == "cuda:3"
    assert str(eval_device("cuda:1", "3")) == "cuda:1"  # an explicit index wins
    assert str(eval_device("cuda", None)) == "cuda"
    assert str(eval_device("cpu", "3")) == "cpu"


def test_a_misspelt_option_is_not_taken_for_a_config_override(capsys):
    from lst_train.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["info", str(RECIPES / "debug_cpu.yaml"), "--tokens_per_patch=3"])
    assert exit_.value.code == 2 and "unrecognized arguments: --tokens_per_patch=3" in capsys.readouterr().err


class _NoUsableSource(torch.utils.data.IterableDataset):
    def __iter__(self):
        raise NoUsableData("no usable record in a whole pass over 1 shard(s) (e.g. ['bad.jsonl']); skipped so far: "
                           "{'missing_text': 3}")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_data_error_is_one_line_even_from_a_loader_worker(num_workers):
    with pytest.raises(NoUsableData) as raised:
        next(iter(torch.utils.data.DataLoader(_NoUsableSource(), num_workers=num_workers)))
    assert data_error_line(raised.value) == ("no usable record in a whole pass over 1 shard(s) (e.g. ['bad.jsonl']); "
                                             "skipped so far: {'missing_text': 3}")
