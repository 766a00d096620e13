"""Faults a long run meets, injected for real under torchrun with gloo: steps whose gradients go non-finite (a
learning rate that makes the model diverge) are not applied, are logged with their documents, and K of them in a
row save and stop the run; a rank that stops answering (SIGSTOP) makes its peer fail within the collective timeout
with an error naming rank and step; a checkpoint that cannot be written (a file in its way, a full tmpfs) is one
error line, leaves no partial folder, and either lets training go on or stops it cleanly for an exact resume."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import RECIPES, losses_by_step
from helpers.data import units_corpus
from lst_train.export import export_run
from lst_train.runs import complete_steps

pytestmark = pytest.mark.timeout(600)
DIVERGING = ["training.lr=1e4", "training.grad_clip=0", "training.warmup_steps=1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return units_corpus(tmp_path_factory.mktemp("corpus"), n_speech_shards=4, samples_per_shard=10)


def _train_args(corpus, run_dir, *extra) -> list[str]:
    return [str(RECIPES / "debug_cpu.yaml"), f"data.sources[0].path={corpus['speech']}",
            f"data.sources[1].path={corpus['text']}", f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units",
            "data.seq_units=32", "data.batch_size=2", "training.log_interval=1", "training.warmup_steps=2",
            "checkpoint.interval=4", f"run_dir={run_dir}", *extra]


def _train(corpus, run_dir, *extra, ranks: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", "-m",
           "lst_train", "train", *_train_args(corpus, run_dir, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=os.environ | {"PYTHONUNBUFFERED": "1"})


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_non_finite_steps_are_not_applied_and_the_run_goes_on(corpus, tmp_path):
    run_dir = tmp_path / "run"
    first = _train(corpus, run_dir, *DIVERGING, "training.steps=12", "training.max_bad_steps=0",
                   "training.stop_at=6")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    result = _train(corpus, run_dir, *DIVERGING, "training.steps=12", "training.max_bad_steps=0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = _metrics(run_dir)
    bad = [r["step"] for r in records if r["grad_norm"] != r["grad_norm"]]
    # The count is the run's, across the resume at step 6.
    assert any(step <= 6 for step in bad) and any(step > 6 for step in bad)
    assert records[-1]["bad_steps"] == len(bad) and records[-1]["step"] == 12
    assert "update not applied" in result.stdout and "documents on rank 1" in result.stdout
    exported = load_file(Path(export_run(str(run_dir), str(tmp_path / "export"))) / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in exported.values()), "a non-finite update reached the weights"


def test_k_non_finite_steps_in_a_row_save_and_stop_naming_step_and_shards(corpus, tmp_path):
    run_dir = tmp_path / "run"
    result = _train(corpus, run_dir, *DIVERGING, "training.steps=30", "training.max_bad_steps=3")
    assert result.returncode != 0
    # Rank 0's line: each rank names its own shards, and the ranks' lines come in either order.
    line = next(line for line in result.stdout.splitlines() if "stopping at step" in line and "[rank0]" in line)
    step = int(line.split("stopping at step ")[1].split(":")[0])
    assert "3 steps in a row" in line and "speech/shard-" in line and "training.max_bad_steps=3" in line
    assert complete_steps(str(run_dir))[0] == step  # saved where it stopped: a resume continues past the bad data
    records = _metrics(run_dir)
    assert [r["grad_norm"] != r["grad_norm"] for r in records[-3:]] == [True] * 3
    # The launch scripts' torchrun --max-restarts reruns the same command: it must stay stopped, at once.
    again = subprocess.run([sys.executable, "-m", "lst_train", "train", *_train_args(corpus, run_dir, *DIVERGING,
                                                                                     "training.steps=30")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 3 and f"stopped at step {step}" in again.stdout + again.stderr
    assert "diverged.json" in again.stdout + again.stderr and complete_steps(str(run_dir))[0] == step


def _worker_pid(torchrun_pid: int, rank: int) -> int | None:
    """The pid of a torchrun worker by its RANK (workers are the agent's children)."""
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(torchrun_pid)], capture_output=True, text=True)
    for pid in map(int, children.stdout.split()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


def test_a_stuck_rank_becomes_an_error_naming_rank_and_step_within_the_timeout(corpus, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lst_train",
           "train", str(RECIPES / "debug_cpu.yaml"), f"data.sources[0].path={corpus['speech']}",
           f"data.sources[1].path={corpus['text']}", f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units",
           "data.seq_units=32", "data.batch_size=2", "training.steps=100000", "training.log_interval=1",
           "checkpoint.interval=1000", "training.collective_timeout_s=10", f"run_dir={run_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run_dir / "metrics.jsonl").is_file():
            time.sleep(0.2)
        pid = _worker_pid(proc.pid, 1)
        assert pid is not None, "no rank-1 worker found"
        os.kill(pid, signal.SIGSTOP)  # the rank hangs: alive, holding its sockets, answering nothing
        stopped_at = time.time()
        seen = []
        for seen_line in proc.stdout:
            seen.append(seen_line)
            if "a collective failed" in seen_line:
                error_at = time.time() - stopped_at
                break
        # Woken, the hung rank takes torchrun's SIGTERM at once instead of after torchrun's 30 s grace.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        out = "".join(seen) + proc.communicate(timeout=120)[0]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the stopped worker, if torchrun left it
        except ProcessLookupError:
            pass
    line = next((line for line in out.splitlines() if "a collective failed" in line), None)
    assert line is not None, out[-3000:]
    assert "rank 0 of 2, step " in line and "training.collective_timeout_s=10" in line
    assert proc.returncode != 0 and error_at < 100, error_at


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    result = _train(corpus, run_dir, "training.steps=8", "checkpoint.interval=2")
    assert result.returncode == 0, result.stdout[-3000:]
    return losses_by_step(run_dir)


def test_an_unwritable_checkpoint_is_one_error_line_and_training_goes_on(corpus, reference, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-4").write_text("a file where the step-4 folder must go")
    result = _train(corpus, run_dir, "training.steps=8", "checkpoint.interval=2", "checkpoint.keep_last=0")
    assert result.returncode == 0, result.stdout[-3000:]
    errors = [line for line in result.stdout.splitlines() if "could not be written" in line]
    assert len(errors) == 2 and all("checkpoint step-4" in e and "FileExistsError" in e and "step-2" in e
                                    and "tries again at step 6" in e for e in errors)  # one line per rank
    assert complete_steps(str(run_dir)) == [8, 6, 2]
    assert losses_by_step(run_dir) == reference


def _mount_tmpfs(path: Path, size: int) -> bool:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_stops_cleanly_and_the_relaunch_resumes_exactly(corpus, reference, tmp_path):
    sized = tmp_path / "sized"
    assert _train(corpus, sized, "training.steps=2", "checkpoint.interval=2").returncode == 0
    size = sum(f.stat().st_size for f in (sized / "checkpoints" / "step-2").iterdir())
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    if not _mount_tmpfs(checkpoints, size * 3 // 2):  # room for one checkpoint and a half
        pytest.skip("cannot mount a size-limited tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        result = _train(corpus, run_dir, "training.steps=8", "checkpoint.interval=2",
                        "checkpoint.stop_on_save_error=true")
        kept = tmp_path / "kept"
        subprocess.run(["cp", "-a", str(checkpoints), str(kept)], check=True)
    finally:
        subprocess.run(["umount", str(checkpoints)], check=True)
    assert result.returncode != 0
    line = next(line for line in result.stdout.splitlines() if "could not be written" in line)
    assert "checkpoint step-4" in line and "No space left on device" in line and "step-2; stopping" in line
    assert sorted(p.name for p in kept.iterdir()) == ["step-2"]  # no partial step-4 for resume or purge to see
    checkpoints.rmdir()
    kept.rename(checkpoints)
    relaunch = _train(corpus, run_dir, "training.steps=8", "checkpoint.interval=2",
                      "checkpoint.stop_on_save_error=true")
    assert relaunch.returncode == 0, relaunch.stdout[-3000:]
    assert "resumed at step 2" in relaunch.stdout
    assert losses_by_step(run_dir) == reference


def test_a_killed_rank_restarts_the_group_which_resumes_and_finishes_with_the_same_losses(corpus, tmp_path):
    reference_dir = tmp_path / "reference"
    assert _train(corpus, reference_dir, "training.steps=16").returncode == 0
    run_dir = tmp_path / "run"
    cmd = ["bash", str(RECIPES.parent / "launch" / "run_local.sh"), str(RECIPES / "debug_cpu.yaml"),
           f"data.sources[0].path={corpus['speech']}", f"data.sources[1].path={corpus['text']}",
           f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", "data.seq_units=32", "data.batch_size=2",
           "training.steps=16", "training.warmup_steps=2", "training.log_interval=1", "checkpoint.interval=4",
           f"run_dir={run_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=os.environ | {"PYTHONUNBUFFERED": "1", "NGPU": "2", "PYTHON": sys.executable})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run_dir / "checkpoints" / "step-4" / ".metadata").is_file():
            time.sleep(0.05)
        pid = _worker_pid(proc.pid, 1)
        assert pid is not None, "no rank-1 worker found"
        os.kill(pid, signal.SIGKILL)  # one rank dies; the launch script's --max-restarts brings the group back
        out, _ = proc.communicate(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out[-4000:]
    assert "a collective failed" in out and "resumed at step" in out
    assert losses_by_step(run_dir) == losses_by_step(reference_dir)


@pytest.mark.parametrize("before,after", [(2, 1), (1, 2)])
def test_a_run_resumes_on_another_number_of_ranks(corpus, tmp_path, before, after):
    run_dir = tmp_path / "run"
    first = _train(corpus, run_dir, "training.steps=8", "training.stop_at=4", "checkpoint.interval=2", ranks=before)
    assert first.returncode == 0, first.stdout[-3000:]
    seen = losses_by_step(run_dir)
    second = _train(corpus, run_dir, "training.steps=8", "checkpoint.interval=2", ranks=after)
    assert second.returncode == 0, second.stdout[-3000:]
    assert f"was written by {before} ranks, this run has {after}" in second.stdout
    assert f"resumed at step 4 of 8 on {after} rank(s)" in second.stdout
    assert second.stdout.count("restarts its epoch") == after  # each new reader says what it did
    losses = losses_by_step(run_dir)
    assert sorted(losses) == list(range(1, 9)) and all(losses[s] == seen[s] for s in range(1, 5))
    assert all(loss == loss for loss in losses.values()) and (run_dir / "finished.json").is_file()
