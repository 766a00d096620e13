"""The stop after training.max_bad_steps non-finite steps in a row stays a stop: without a mark in RUN_DIR, torchrun's
--max-restarts (set by every launch script) would restart the group, which would resume past the bad batches at the
same learning rate, up to MAX_RESTARTS times."""

import json
import os

from lst_train.runs import DIVERGED


class NonFiniteSteps(RuntimeError):
    """training.max_bad_steps consecutive steps had a non-finite gradient norm: the run saved and stopped."""


def mark_diverged(run_dir: str, step: int) -> None:
    with open(os.path.join(run_dir, DIVERGED), "w") as f:
        json.dump({"step": step}, f)


def refuse_if_diverged(run_dir: str) -> None:
    """Called at start-up, before anything costly is built."""
    path = os.path.join(run_dir, DIVERGED)
    if not os.path.isfile(path):
        return
    with open(path) as f:
        step = json.load(f)["step"]
    raise NonFiniteSteps(f"{path}: this run stopped at step {step} on training.max_bad_steps non-finite steps in a "
                         "row and is not continued as it is; to continue on purpose (e.g. with a lower training.lr), "
                         "delete that file and run again")
