"""Distributed checkpoints through torchtitan's DCP CheckpointManager, plus what it does not keep.

Beside the model, optimizer and LR schedule it saves: every rank's loader state and RNG states (under rank-specific
keys, which DCP would otherwise deduplicate), the step, the tokens seen and the resolved config. A checkpoint is
complete once DCP has written its `.metadata` (the last file of a save), so a crash mid-save leaves the previous
one as the latest; a complete but unreadable one (e.g. a truncated file) is reported and the one before is used,
but never a fresh start while checkpoints exist.
"""

import io
import json
import logging
import os
import random
import re
import shutil
import time
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.stateful import Stateful
from torchtitan.components.checkpoint import CheckpointManager

from lst_train.config.training import CheckpointConfig
from lst_train.runs import CHECKPOINTS, ROLLBACK, checkpoint_folder, complete_steps

LOG = logging.getLogger("lst_train.checkpoint")


class RankLocalState(Stateful):
    """Per-rank state under the key `rank{r}`, serialized by torch.save and read back with weights_only=True:
    containers, numbers, strings and tensors only, so a planted file cannot run code through this state. A run on
    another number of ranks reads the state of rank r mod (ranks that wrote it): see Checkpointer.resume."""

    def __init__(self, rank: int, get: Callable[[], Any], put: Callable[[Any], None]):
        self.key = f"rank{rank}"
        self.get, self.put = get, put

    def state_dict(self) -> dict:
        buffer = io.BytesIO()
        torch.save(self.get(), buffer)
        return {self.key: buffer.getvalue()}

    def load_state_dict(self, state: dict) -> None:
        if self.key not in state:
            raise ValueError(f"the checkpoint has no state for {self.key}: resume with the same number of ranks")
        data = state[self.key]
        if not data.startswith(b"PK"):  # torch.save's zip; before 2026-11-28 this state was a raw pickle
            raise ValueError(f"{self.key}: per-rank state in the old pickled format; resume this run with the "
                             "version that wrote it")
        self.put(torch.load(io.BytesIO(data), weights_only=True))


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class TrainState(Stateful):
    """Step, tokens and training FLOPs seen, the steps not applied for a non-finite gradient norm, and the resolved
    config (identical on every rank: the norm that decides a skip is global)."""

    COUNTERS = ("bad_steps", "bad_in_a_row")
    """Keys a checkpoint written before 2026-11-29 lacks: such a checkpoint loads with them at 0."""

    def __init__(self, config_yaml: str):
        self.step = 0
        self.tokens_seen = 0
        self.flops_seen = 0.0
        self.bad_steps = 0
        """Steps not applied for a non-finite gradient norm, over the whole run (resumes included)."""
        self.bad_in_a_row = 0
        """How many of the latest steps in a row were not applied (a resume continues the count)."""
        self.config_yaml = config_yaml
        self.saved_config = config_yaml
        """The config the loaded checkpoint was written with (this run's until one is loaded)."""
        self.load_counters = True
        """Whether the checkpoint to load has COUNTERS (set from its metadata before loading)."""

    def state_dict(self) -> dict:
        state = {"step": torch.tensor(self.step), "tokens_seen": torch.tensor(self.tokens_seen),
                 "flops_seen": torch.tensor(self.flops_seen, dtype=torch.float64), "config": self.config_yaml}
        if self.load_counters:
            state.update({key: torch.tensor(getattr(self, key)) for key in self.COUNTERS})
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        self.flops_seen = float(state["flops_seen"])
        for key in self.COUNTERS:
            setattr(self, key, int(state.get(key, 0)))
        self.saved_config = state["config"]
        self.load_counters = True


def _first_line(err: BaseException) -> str:
    """The root cause's first line (DCP gathers each rank's error, with its traceback, into a CheckpointException)."""
    while True:
        if isinstance(err, CheckpointException) and err.failures:
            err = next(iter(err.failures.values()))[0]
        elif err.__cause__ is not None:
            err = err.__cause__
        else:
            break
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"


class CheckpointLoadFailed(RuntimeError):
    """Checkpoints exist but none of them loads."""


class CheckpointSaveFailed(RuntimeError):
    """A checkpoint save failed where the run cannot go on without it (last step, preemption, or configured)."""


class Checkpointer:
    def __init__(self, cfg: CheckpointConfig, run_dir: str, rank: int, world_size: int, model, optimizers,
                 lr_schedulers, loader, train_state: TrainState):
        self.cfg, self.run_dir, self.rank, self.world_size = cfg, run_dir, rank, world_size
        self.train_state = train_state
        self.rank_states = [RankLocalState(rank, loader.state_dict, loader.load_state_dict),
                            RankLocalState(rank, rng_state, set_rng_state)]
        manager_cfg = CheckpointManager.Config(
            enable=True, folder=CHECKPOINTS, interval=cfg.interval, keep_latest_k=cfg.keep_last,
            async_mode="async" if cfg.async_save else "disabled", last_save_model_only=False,
            initial_load_path=cfg.initial_model or None, initial_load_model_only=bool(cfg.initial_model))
        self.manager = CheckpointManager(
            manager_cfg, dataloader=self.rank_states[0],
            model_parts=[model], optimizers=optimizers, lr_schedulers=lr_schedulers,
            states={"train_state": train_state, "rng": self.rank_states[1]},
            sd_adapter=None, base_folder=run_dir)
        self.in_flight: int | None = None
        """The step of the async save still being written, if any."""

    def resume(self) -> int | None:
        """Load per checkpoint.resume; the step loaded, or None for a fresh start (after any initial model). Rolling
        back to an older step (an explicit step, or past unreadable newer ones) moves the newer step folders aside."""
        mode = self.cfg.resume
        if mode == "none" or not self.cfg.enabled:
            return None
        if mode.isdigit() and not self._rolled_back_to(int(mode)):
            step = int(mode)
            self._match_ranks(step)
            self.manager.load(step)
            self._abandon_newer(step)
            if self.rank == 0:
                with open(os.path.join(self.run_dir, ROLLBACK), "w") as f:
                    json.dump({"step": step}, f)
            return step
        errors = []
        for step in complete_steps(self.run_dir):
            try:
                self._match_ranks(step)
                self.manager.load(step)
            # DCP gathers every rank's read error into one CheckpointException (a BaseException) raised on all
            # ranks, so all fall back together.
            except (Exception, CheckpointException) as err:
                LOG.warning("checkpoint step-%d in %s is unreadable (%s); trying the previous one", step,
                            checkpoint_folder(self.run_dir), _first_line(err))
                errors.append(f"step-{step}: {_first_line(err)}")
                continue
            if errors:
                self._abandon_newer(step)
            return step
        if errors:  # not a fresh start: that would retrain from step 0 over this run's metrics and checkpoints
            raise CheckpointLoadFailed(
                f"no checkpoint in {checkpoint_folder(self.run_dir)} loads ({'; '.join(errors)}); fix the cause and "
                "run again, or start afresh on purpose with checkpoint.resume=none")
        if self.cfg.initial_model:
            self.manager.load()  # no checkpoint in RUN_DIR: model weights from checkpoint.initial_model
        return None

    def _rolled_back_to(self, step: int) -> bool:
        """Whether this run already rolled back to `step`: a requeue or restart of the same command (which still
        says checkpoint.resume=N) then continues from the latest checkpoint instead of rewinding again."""
        path = os.path.join(self.run_dir, ROLLBACK)
        if not os.path.isfile(path):
            return False
        with open(path) as f:
            done = json.load(f)["step"] == step
        if done:
            LOG.info("checkpoint.resume=%d was applied by an earlier start (%s): continuing from the latest "
                     "checkpoint; delete that file to roll back to step %d again", step, path, step)
        return done

    def _abandon_newer(self, step: int) -> None:
        """Move the step folders newer than `step` (the abandoned trajectory) to checkpoints/abandoned-TIME-to-N/,
        so `auto` never resumes them, keep_last does not rank them above the new ones, and the new trajectory never
        writes into a folder that still has an old .metadata. The folder's name has no `step-N` in it: torchtitan's
        keep_last counts every name containing one."""
        folder = checkpoint_folder(self.run_dir)
        if self.rank == 0:
            newer = sorted(name for name in os.listdir(folder)
                           if (m := re.fullmatch(r"step-(\d+)", name)) and int(m.group(1)) > step)
            if newer:
                aside = os.path.join(folder, f"abandoned-{time.strftime('%Y%m%dT%H%M%S')}-to-{step}")
                os.makedirs(aside, exist_ok=True)
                for name in newer:
                    os.rename(os.path.join(folder, name), os.path.join(aside, name))
                LOG.warning("rolled back to step-%d: moved %s aside to %s", step, ", ".join(newer), aside)
        dist.barrier()

    def _match_ranks(self, step: int) -> None:
        """A checkpoint written by another number of ranks: DCP reshards the model and optimizer; each rank takes the
        loader and RNG state of rank (rank mod ranks that wrote it), and the loader, seeing another reader's state,
        restarts the epochs its sources were in (data/stream.py, ReaderStream._regroup)."""
        path = os.path.join(checkpoint_folder(self.run_dir), f"step-{step}")
        keys = FileSystemReader(path).read_metadata().state_dict_metadata
        written_by = sum(1 for key in keys if re.fullmatch(r"dataloader\.rank\d+", key))
        source = self.rank % written_by if written_by else self.rank
        for state in self.rank_states:
            state.key = f"rank{source}"
        self.train_state.load_counters = all(f"train_state.{key}" in keys for key in TrainState.COUNTERS)
        if written_by and written_by != self.world_size and self.rank == 0:
            LOG.warning("checkpoint step-%d was written by %d ranks, this run has %d: model and optimizer are "
                        "resharded; rank r continues from the loader and RNG state of rank r mod %d, and every "
                        "data source restarts the epoch it was in (what was read of it is read again)", step,
                        written_by, self.world_size, written_by)

    def save(self, step: int, force: bool = False) -> bool:
        """Save at the configured interval, or now when `force` (last step, preemption). A failed save never
        leaves a partial folder behind (torchtitan's keep_last would count it and could delete a complete one);
        raises CheckpointSaveFailed if the run must stop."""
        if not self.cfg.enabled:
            return False
        due = force or step % self.cfg.interval == 0
        # A write that failed in the background is retried by this save if one is due, else at the next interval.
        self._collect_async(wait=due, retry=step if due else step - step % self.cfg.interval + self.cfg.interval)
        if not due:
            return False
        self._clear_stale_metadata(step)
        try:
            saved = self.manager.save(step, last_step=force)
        except (Exception, CheckpointException) as err:  # DCP raises the ranks' gathered errors on every rank
            self._failed(step, err, stop=force or self.cfg.stop_on_save_error, retry=step + self.cfg.interval)
            return False
        if self.manager.save_future is not None:
            self.in_flight = step
        return saved

    def _collect_async(self, wait: bool, retry: int | None) -> None:
        """Take the pending async save's outcome. torchtitan never clears `save_future` after a failure, so every
        later save would re-raise it before writing: take it here, and report the step that actually failed. Waits
        only when a save is due; between checkpoints only a finished write is taken, and only where its failure is
        just logged: the stop policy acts at a due save, when every rank has waited (a stop on one rank alone would
        leave its peers blocked in the next collective)."""
        future = self.manager.save_future
        if future is None or not (wait or (future.done() and not self.cfg.stop_on_save_error)):
            return
        self.manager.save_future, step, self.in_flight = None, self.in_flight, None
        try:
            future.result()
        except (Exception, CheckpointException) as err:
            self._failed(step, err, stop=self.cfg.stop_on_save_error, retry=retry)

    def _failed(self, step: int, err: BaseException, stop: bool, retry: int | None) -> None:
        self._discard_partial(step)
        latest = next(iter(complete_steps(self.run_dir)), None)
        message = (f"checkpoint step-{step} could not be written ({_first_line(err)}); the latest complete "
                   f"checkpoint is {f'step-{latest}' if latest is not None else 'none'}")
        if stop:
            raise CheckpointSaveFailed(f"{message}; stopping") from err
        LOG.error("%s; %s", message, "no later save retries it" if retry is None else
                  f"training goes on and tries again at step {retry} (checkpoint.stop_on_save_error=false)")

    def _clear_stale_metadata(self, step: int) -> None:
        """Writing into an existing step folder: DCP replaces its .metadata only at the end, so an interrupted
        overwrite would look complete with mixed old and new files. Remove it first (rank 0, then all wait)."""
        metadata = os.path.join(checkpoint_folder(self.run_dir), f"step-{step}", ".metadata")
        if self.rank == 0 and os.path.isfile(metadata):
            os.remove(metadata)
        dist.barrier()

    def _discard_partial(self, step: int) -> None:
        path = os.path.join(checkpoint_folder(self.run_dir), f"step-{step}")
        if self.rank == 0 and os.path.isdir(path) and not os.path.isfile(os.path.join(path, ".metadata")):
            shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Wait for a pending async save (its failure handled as at a save), then stop torchtitan's threads."""
        try:
            if self.cfg.enabled:
                self._collect_async(wait=True, retry=None)
        finally:
            self.manager.close()
