"""Checkpointer on real DCP files in one process (a gloo world of 1): async saves that fail in the background,
checkpoints that do not load, and roll-backs to an older step."""

import logging

import pytest
import torch
import torch.distributed as dist

from helpers import RECIPES
from lst_train.config import config_changes, load_config, to_yaml
from lst_train.config.training import CheckpointConfig, TrainingConfig
from lst_train.runs import complete_steps
from lst_train.trainer.checkpointing import Checkpointer, CheckpointLoadFailed, CheckpointSaveFailed, TrainState
from lst_train.trainer.optim import build_lr_schedulers, build_optimizers


@pytest.fixture(scope="module", autouse=True)
def world():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


class Position:
    """A loader's resumable position: what the checkpoint keeps per rank."""

    def __init__(self):
        self.read = 0

    def state_dict(self) -> dict:
        return {"read": self.read}

    def load_state_dict(self, state: dict) -> None:
        self.read = state["read"]


def _checkpointer(run_dir, config="config", **cfg) -> tuple[Checkpointer, TrainState, torch.nn.Module]:
    model = torch.nn.Linear(4, 4)
    training = TrainingConfig(steps=100, warmup_steps=1)
    optimizers = build_optimizers(model, training, "baseline", "cpu")
    state = TrainState(config)
    checkpointer = Checkpointer(CheckpointConfig(**{"interval": 2, "keep_last": 0, **cfg}), str(run_dir), 0, 1, model,
                                optimizers, build_lr_schedulers(optimizers, training), Position(), state)
    return checkpointer, state, model


def _save(checkpointer, state, step, force=False):
    state.step = step
    return checkpointer.save(step, force=force)


def test_a_failed_async_write_is_reported_once_and_later_saves_are_complete(tmp_path, caplog):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-2").write_text("a file where the step-2 folder must go")
    checkpointer, state, _ = _checkpointer(tmp_path, async_save=True)
    with caplog.at_level(logging.ERROR, logger="lst_train.checkpoint"):
        for step in (2, 3, 4, 6):
            _save(checkpointer, state, step)
        _save(checkpointer, state, 8, force=True)
        checkpointer.close()
    assert complete_steps(str(tmp_path)) == [8, 6, 4]
    errors = [r.getMessage() for r in caplog.records if r.name == "lst_train.checkpoint"]
    assert len(errors) == 1 and "checkpoint step-2 could not be written (FileExistsError" in errors[0], errors


def test_a_failed_async_write_stops_the_run_at_the_next_save_when_configured(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-4").write_text("in the way")
    checkpointer, state, _ = _checkpointer(tmp_path, async_save=True, stop_on_save_error=True)
    _save(checkpointer, state, 2)
    _save(checkpointer, state, 4)
    with pytest.raises(CheckpointSaveFailed, match=r"checkpoint step-4 could not be written .* latest complete "
                                                   r"checkpoint is step-2; stopping"):
        _save(checkpointer, state, 6)
    checkpointer.close()
    assert complete_steps(str(tmp_path)) == [2]


def _saved(run_dir, steps, **cfg):
    checkpointer, state, _ = _checkpointer(run_dir, **cfg)
    for step in steps:
        _save(checkpointer, state, step)
    checkpointer.close()


def _truncate(run_dir, step):
    for data_file in (run_dir / "checkpoints" / f"step-{step}").glob("*.distcp"):
        data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 3])


def _abandoned(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.glob("checkpoints/abandoned-*/step-*"))


def test_when_no_checkpoint_loads_the_run_stops_naming_each_one(tmp_path):
    _saved(tmp_path, (2, 4))
    _truncate(tmp_path, 2)
    _truncate(tmp_path, 4)
    checkpointer, state, _ = _checkpointer(tmp_path)
    with pytest.raises(CheckpointLoadFailed, match=r"no checkpoint in .* loads \(step-4: .*; step-2: .*\); .*"
                                                   r"checkpoint.resume=none"):
        checkpointer.resume()
    checkpointer.close()
    assert complete_steps(str(tmp_path)) == [4, 2] and not _abandoned(tmp_path)


def test_falling_back_past_an_unreadable_checkpoint_moves_it_aside_out_of_keep_last(tmp_path):
    _saved(tmp_path, (2, 4, 6))
    _truncate(tmp_path, 6)
    checkpointer, state, _ = _checkpointer(tmp_path, keep_last=2)
    assert checkpointer.resume() == 4 and state.step == 4
    assert complete_steps(str(tmp_path)) == [4, 2] and _abandoned(tmp_path) == ["step-6"]
    for step in (6, 8):  # the new trajectory's checkpoints are the ones keep_last keeps
        _save(checkpointer, state, step)
    checkpointer.close()
    assert complete_steps(str(tmp_path)) == [8, 6] and _abandoned(tmp_path) == ["step-6"]


def test_an_explicit_rollback_moves_newer_checkpoints_aside_once(tmp_path):
    _saved(tmp_path, (2, 4, 6))
    checkpointer, state, _ = _checkpointer(tmp_path, resume="2")
    assert checkpointer.resume() == 2 and state.step == 2
    assert complete_steps(str(tmp_path)) == [2] and _abandoned(tmp_path) == ["step-4", "step-6"]
    _save(checkpointer, state, 4)
    checkpointer.close()
    # The same command again (a requeue, a torchrun restart): it continues, it does not rewind to step 2 again.
    checkpointer, state, _ = _checkpointer(tmp_path, resume="2")
    assert checkpointer.resume() == 4 and state.step == 4
    checkpointer.close()
    assert complete_steps(str(tmp_path)) == [4, 2]


def test_an_interrupted_overwrite_of_a_step_folder_does_not_look_complete(tmp_path):
    _saved(tmp_path, (2,))
    data_file = next((tmp_path / "checkpoints" / "step-2").glob("*.distcp"))
    data_file.unlink()
    data_file.mkdir()  # the new write of this file fails after the folder was entered
    _saved(tmp_path, (2,), resume="none")
    assert complete_steps(str(tmp_path)) == []


def test_a_resume_knows_the_config_its_checkpoint_was_written_with(tmp_path):
    """A requeue with changed overrides resumes (the trainer logs each change): the checkpoint keeps the old config."""
    saved = to_yaml(load_config(RECIPES / "debug_cpu.yaml", ["training.lr=0.001", "run_dir=a"]))
    current = to_yaml(load_config(RECIPES / "debug_cpu.yaml", ["training.lr=0.002", "run_dir=b", "data.batch_size=3"]))
    checkpointer, state, _ = _checkpointer(tmp_path, saved)
    _save(checkpointer, state, 2)
    checkpointer.close()
    checkpointer, state, _ = _checkpointer(tmp_path, current)
    assert checkpointer.resume() == 2 and state.saved_config == saved
    checkpointer.close()
    assert config_changes(state.saved_config, state.config_yaml) == ["data.batch_size: 4 -> 3",
                                                                     "training.lr: 0.001 -> 0.002"]


def test_the_non_finite_step_counts_survive_a_resume_and_older_checkpoints_load_with_zero(tmp_path):
    checkpointer, state, _ = _checkpointer(tmp_path / "new")
    state.bad_steps, state.bad_in_a_row = 5, 2
    _save(checkpointer, state, 2)
    checkpointer.close()
    checkpointer, state, _ = _checkpointer(tmp_path / "new")
    assert checkpointer.resume() == 2 and (state.bad_steps, state.bad_in_a_row) == (5, 2)
    checkpointer.close()
    # A checkpoint written before the counts were kept: its train_state has no such keys.
    checkpointer, state, _ = _checkpointer(tmp_path / "old")
    state.load_counters, state.bad_steps = False, 5
    _save(checkpointer, state, 2)
    checkpointer.close()
    checkpointer, state, _ = _checkpointer(tmp_path / "old")
    state.bad_steps = 7
    assert checkpointer.resume() == 2 and (state.step, state.bad_steps, state.bad_in_a_row) == (2, 0, 0)
    state.bad_steps = 1
    _save(checkpointer, state, 4)  # saved again with the counts
    checkpointer.close()
    checkpointer, state, _ = _checkpointer(tmp_path / "old")
    assert checkpointer.resume() == 4 and state.bad_steps == 1
    checkpointer.close()
