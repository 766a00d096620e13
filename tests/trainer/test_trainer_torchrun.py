"""The trainer under real torchrun launches with gloo: exact resume, crash and preemption recovery, world-size
invariance, multi-node rendezvous, export, and a corrupt newest checkpoint."""

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import RECIPES, REPO, losses_by_step
from helpers.data import WORDS, units_corpus
from lst_train.config import load_config
from lst_train.data.dataset import build_dataloader
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.skips import SkipCounter
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.evaluation.items import read_items
from lst_train.evaluation.prompts import PromptBuilder, evaluation_patcher
from lst_train.evaluation.scoring import evaluate
from lst_train.export import export_run, load_exported
from lst_train.loss import loss_sums, targets_of
from lst_train.runs import read_metrics
from lst_train.trainer.optim import build_lr_schedulers, build_optimizers

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return units_corpus(tmp_path_factory.mktemp("corpus"), n_speech_shards=4, samples_per_shard=10)


def _args(corpus, run_dir, *extra):
    return [str(RECIPES / "debug_cpu.yaml"), f"data.sources[0].path={corpus['speech']}",
            f"data.sources[1].path={corpus['text']}", f"data.tokenizer={corpus['tokenizer']}",
            "data.codec.kind=units", "data.seq_units=32", "data.batch_size=2", "training.steps=8",
            "training.warmup_steps=2", "training.log_interval=1", "checkpoint.interval=2", f"run_dir={run_dir}",
            *extra]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc, args, **popen):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "lst_train", "train", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def _run(nproc, args):
    proc = _torchrun(nproc, args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory):
    """The uninterrupted 2-rank reference run."""
    run_dir = tmp_path_factory.mktemp("straight")
    _run(2, _args(corpus, run_dir))
    return run_dir, losses_by_step(run_dir)


def test_straight_run_writes_metrics_checkpoints_and_tensorboard(straight):
    run_dir, losses = straight
    assert sorted(losses) == list(range(1, 9))
    record = json.loads(Path(run_dir, "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("step", "loss", "loss_text", "loss_speech", "lr", "grad_norm", "tokens_per_s", "patches_per_s",
                "speech_seconds_per_s", "mfu", "mem_gb", "data_wait_frac", "tokens_seen", "flops_seen", "skipped"):
        assert key in record
    assert losses[8] < losses[1]
    assert list(Path(run_dir, "tb").glob("events.out.tfevents.*"))
    assert (Path(run_dir) / "checkpoints" / "step-8" / ".metadata").is_file()
    assert (Path(run_dir) / "config.yaml").is_file()
    assert "step 8 | loss" in (Path(run_dir) / "train.log").read_text()
    training = load_config(Path(run_dir) / "config.yaml").training
    optimizers = build_optimizers(torch.nn.Linear(2, 2), training, "baseline", "cpu")
    schedule, used = build_lr_schedulers(optimizers, training), []
    for _ in range(8):
        used.append(optimizers.optimizers[0].param_groups[-1]["lr"])
        optimizers.step()
        schedule.step()
    assert [r["lr"] for r in _records(run_dir).values()] == used  # each step's record: the LR that step used


def test_resume_gives_bit_identical_losses(corpus, straight, tmp_path):
    _run(2, _args(corpus, tmp_path, "training.stop_at=4"))
    assert sorted(losses_by_step(tmp_path)) == [1, 2, 3, 4]
    _run(2, _args(corpus, tmp_path))
    assert losses_by_step(tmp_path) == straight[1]
    last = [json.loads(Path(run, "metrics.jsonl").read_text().splitlines()[-1]) for run in (tmp_path, straight[0])]
    assert last[0]["flops_seen"] == last[1]["flops_seen"] > 0 and last[0]["tokens_seen"] == last[1]["tokens_seen"]


def _records(run_dir):
    """step -> metrics record, the last of a step winning."""
    return {r["step"]: r for r in read_metrics(str(run_dir))}


def test_a_flop_budget_run_stops_nearest_its_budget_and_resumes_exactly(corpus, straight, tmp_path):
    # The loader's batches do not depend on the model, so the straight run's cumulative FLOPs are the budget run's.
    spent = {step: r["flops_seen"] for step, r in _records(straight[0]).items()}
    budget = (spent[5] + spent[6]) / 2
    expected = next(s for s in sorted(spent) if spent[s] + spent[s] / s / 2 >= budget)
    assert expected in (5, 6)
    budget_args = [f"training.flop_budget={budget}", "training.steps=6"]
    whole = tmp_path / "whole"
    _run(2, _args(corpus, whole, *budget_args))
    records = _records(whole)
    assert max(records) == expected and records[expected]["flops_seen"] == spent[expected]
    assert json.loads((whole / "finished.json").read_text()) == {"step": expected, "flops": spent[expected]}
    lrs = [records[s]["lr"] for s in sorted(records)]
    assert lrs[-1] < lrs[2], "the schedule, laid over the budget's FLOPs, has decayed by the end"
    parted = tmp_path / "parted"
    _run(2, _args(corpus, parted, *budget_args, "training.stop_at=3"))
    assert not (parted / "finished.json").exists(), "stop_at is not the run's end"
    _run(2, _args(corpus, parted, *budget_args))
    assert losses_by_step(parted) == losses_by_step(whole)
    assert [r["lr"] for r in _records(parted).values()] == lrs


def test_one_rank_with_two_workers_equals_two_ranks(corpus, straight, tmp_path):
    # The same 2 readers (rank x worker) feed one global batch either way.
    _run(1, _args(corpus, tmp_path, "data.num_workers=2", "training.grad_accum_steps=2"))
    one, two = losses_by_step(tmp_path), straight[1]
    assert sorted(one) == sorted(two)
    assert all(abs(one[s] - two[s]) <= 1e-5 for s in two), (one, two)


def _wait_for_step(run_dir, step, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = Path(run_dir, "metrics.jsonl")
        if path.exists() and any(json.loads(l)["step"] >= step for l in path.read_text().splitlines() if l):
            return
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    raise TimeoutError(f"step {step} not reached")


LONG = ("training.steps=40", "data.seq_units=96", "checkpoint.interval=3")


@pytest.fixture(scope="module")
def long_reference(corpus, tmp_path_factory):
    """An uninterrupted 40-step run, long enough to interrupt mid-way."""
    run_dir = tmp_path_factory.mktemp("long")
    _run(2, _args(corpus, run_dir, *LONG))
    return losses_by_step(run_dir)


def test_kill_9_then_same_command_continues_exactly(corpus, long_reference, tmp_path):
    args = _args(corpus, tmp_path, *LONG)
    proc = _torchrun(2, args)
    _wait_for_step(tmp_path, 7, proc)
    # torchrun starts each worker in its own session: a crash takes the workers and torchrun alike.
    for pid_file in Path(tmp_path, ".pids").glob("*.pid"):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert max(losses_by_step(tmp_path)) < 40
    _run(2, args)
    assert losses_by_step(tmp_path) == long_reference


def test_sigterm_saves_at_the_next_step_and_the_relaunch_continues(corpus, long_reference, tmp_path):
    # No sync point before the end but the step's own all_reduce, which carries the stop request.
    args = _args(corpus, tmp_path, *LONG, "checkpoint.interval=100", "training.log_interval=100")
    proc = _torchrun(2, args)
    deadline = time.time() + 240
    while len(list(Path(tmp_path, ".pids").glob("*.pid"))) < 2 and time.time() < deadline:  # both ranks in the loop
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    for pid_file in Path(tmp_path, ".pids").glob("*.pid"):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    stopped = max(losses_by_step(tmp_path))
    assert stopped < 40 and f"preemption signal: saved step {stopped}" in out
    assert (tmp_path / "checkpoints" / f"step-{stopped}" / ".metadata").is_file()
    _run(2, args)
    assert losses_by_step(tmp_path) == {step: long_reference[step] for step in (stopped, 40)}


def test_two_nodes_rendezvous_on_localhost(corpus, tmp_path):
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
         f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=lst-test", "-m", "lst_train", "train",
         *_args(corpus, tmp_path, "training.steps=2", "training.warmup_steps=1")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    assert sorted(losses_by_step(tmp_path)) == [1, 2]
    assert "on 2 rank(s)" in "".join(outs)


def test_export_reproduces_the_checkpoint_logits(straight, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from lst_train.model import build_model

    run_dir, _ = straight
    exported, cfg = load_exported(export_run(str(run_dir), str(tmp_path / "export")))
    dcp_to_torch_save(run_dir / "checkpoints" / "step-8", tmp_path / "full.pt")
    full = torch.load(tmp_path / "full.pt", weights_only=False)
    reference = build_model(load_config(run_dir / "config.yaml").model, seed=1)
    reference.load_state_dict({k: full[k] for k in reference.state_dict()})
    vocab = reference.vocab
    tokens = torch.tensor([[vocab.bos, vocab.text_marker, 5, 6, vocab.speech_marker] +
                           [vocab.speech_id(c) for c in (1, 2, 3, 4, 5)] + [vocab.eos]])
    patch_lengths = torch.tensor([[1, 1, 1, 1, 1, 4, 1, 1]])
    with torch.no_grad():
        assert torch.equal(exported(tokens, patch_lengths), reference.eval()(tokens, patch_lengths))
    assert cfg.model == load_config(run_dir / "config.yaml").model


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(corpus, straight, tmp_path):
    _run(2, _args(corpus, tmp_path, "training.stop_at=6"))
    newest = tmp_path / "checkpoints" / "step-6"
    for data_file in newest.glob("*.distcp"):
        data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 3])
    out = _run(2, _args(corpus, tmp_path))
    assert "step-6" in out and "unreadable" in out
    assert "resumed at step 4" in out
    assert losses_by_step(tmp_path) == straight[1]


def test_launch_scripts(corpus, tmp_path):
    launch = REPO / "launch"
    for script in ("run_local.sh", "run_multinode.sh", "slurm.sbatch"):
        assert subprocess.run(["bash", "-n", str(launch / script)]).returncode == 0, script
    env = {**os.environ, "NGPU": "2", "PYTHON": sys.executable}
    result = subprocess.run([str(launch / "run_local.sh"), *_args(corpus, tmp_path, "training.steps=2",
                                                                 "training.warmup_steps=1")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert sorted(losses_by_step(tmp_path)) == [1, 2]


def _single(args):
    result = subprocess.run([sys.executable, "-m", "lst_train", "train", *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("variant", ["training.activation_checkpoint=full", "training.activation_checkpoint=selective"])
def test_activation_checkpointing_keeps_the_losses(corpus, tmp_path, variant):
    plain, checkpointed = tmp_path / "plain", tmp_path / "ac"
    _single(_args(corpus, plain, "training.steps=3"))
    _single(_args(corpus, checkpointed, "training.steps=3", variant))
    a, b = losses_by_step(plain), losses_by_step(checkpointed)
    assert all(abs(a[s] - b[s]) <= 1e-6 for s in a)


def test_explicit_step_resume_and_model_only_initial_load(corpus, straight, tmp_path):
    source, _ = straight
    _run(2, _args(corpus, tmp_path / "again", "training.stop_at=2"))
    _run(2, _args(corpus, tmp_path / "again", "checkpoint.resume=2"))
    assert losses_by_step(tmp_path / "again") == straight[1]


    tuned = tmp_path / "tuned"
    _single(_args(corpus, tuned, "training.steps=1", "training.warmup_steps=0", "training.lr=1e-30",
                  f"checkpoint.initial_model={source / 'checkpoints' / 'step-8'}"))
    start, _ = load_exported(export_run(str(source), str(tmp_path / "source_export")))
    after, _ = load_exported(export_run(str(tuned), str(tmp_path / "tuned_export")))
    for (name, a), b in zip(start.state_dict().items(), after.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_compiled_blocks_keep_the_losses(corpus, tmp_path):
    plain, compiled = tmp_path / "plain", tmp_path / "compiled"
    _single(_args(corpus, plain, "training.steps=2"))
    _single(_args(corpus, compiled, "training.steps=2", "training.compile=true"))
    a, b = losses_by_step(plain), losses_by_step(compiled)
    assert all(abs(a[s] - b[s]) <= 1e-4 for s in a)


def test_async_checkpoints_resume_exactly(corpus, straight, tmp_path):
    _run(2, _args(corpus, tmp_path, "training.stop_at=5", "checkpoint.async_save=true"))
    assert sorted(int(p.parent.name[5:]) for p in tmp_path.glob("checkpoints/step-*/.metadata")) == [2, 4, 5]
    _run(2, _args(corpus, tmp_path, "checkpoint.async_save=true"))
    assert losses_by_step(tmp_path) == straight[1]


def test_evaluation_during_training(corpus, tmp_path):
    import random as random_module

    rng = random_module.Random(0)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({
        "id": str(i), "context": {"text": " ".join(rng.choice(WORDS) for _ in range(6))},
        "endings": [{"text": rng.choice(WORDS)}, {"text": rng.choice(WORDS)}], "label": i % 2}) + "\n"
        for i in range(6)))
    run_dir = tmp_path / "run"
    _run(2, _args(corpus, run_dir, "training.steps=4", "evaluation.interval=2", "evaluation.validation_batches=2",
                  "training.log_interval=100",
                  f"evaluation.sets=[{{name: toy, path: {items}, settings: [t2t]}}]",
                  f"evaluation.validation=[{{kind: speech, path: '{corpus['speech']}'}}]"))
    records = _records(run_dir)
    assert sorted(records) == [2, 4]
    for step in (2, 4):  # an offline pass with the same step's weights gives the same numbers
        model, cfg = load_exported(export_run(str(run_dir), str(tmp_path / f"export-{step}"), step=step))
        builder = PromptBuilder(SpeechTextTokenizer.from_config(cfg.data, model.vocab),
                                evaluation_patcher(cfg.model.arch, cfg.patching, cfg.training.steps))
        offline = evaluate(model, builder, read_items(str(items)), ["t2t"], SkipCounter())["t2t"]
        for key in ("accuracy_sum", "accuracy_mean"):
            assert records[step][f"eval/toy/t2t/{key}"] == offline[key]
        validation = LoaderSpec.from_recipe(cfg).reading(cfg.evaluation.validation)
        sums = []
        for rank in (0, 1):  # the two ranks' validation shares
            for batch in itertools.islice(build_dataloader(validation, rank, 2), cfg.evaluation.validation_batches):
                with torch.no_grad():
                    per_token = model(batch.tokens, batch.patch_lengths, batch.closed_early,
                                      targets_of(batch.labels))
                sums.append(loss_sums(per_token, batch.labels, model.vocab))
        total, n = sum(float(s.total) for s in sums), sum(int(s.n_total) for s in sums)
        speech, n_speech = sum(float(s.speech) for s in sums), sum(int(s.n_speech) for s in sums)
        assert records[step]["val_loss"] == pytest.approx(total / n, rel=1e-5)
        assert records[step]["val_loss_speech"] == pytest.approx(speech / n_speech, rel=1e-5)


def test_an_entropy_lst_fits_its_table_then_trains_with_workers_and_validates(corpus, tmp_path, capsys):
    """`data fit-entropy` on the recipe, then 2 ranks with a loader worker each (the patcher crosses into the worker
    process with its table) and validation on speech, patched by the same table."""
    from lst_train.cli import main

    table = tmp_path / "entropy.safetensors"
    args = _args(corpus, tmp_path / "run", "patching.strategy=entropy", f"patching.entropy_table={table}",
                 "data.num_workers=1", "training.steps=4", "evaluation.interval=4", "evaluation.validation_batches=2",
                 f"evaluation.validation=[{{kind: speech, path: '{corpus['speech']}'}}]")
    assert main(["data", "fit-entropy", *args[:5], "--out", str(table)]) == 0
    assert "threshold for a mean patch length of" in capsys.readouterr().out
    _run(2, args)
    records = _records(tmp_path / "run")
    assert sorted(records) == [1, 2, 3, 4]
    assert any(r["patches_per_s"] < r["tokens_per_s"] for r in records.values())  # speech patches hold > 1 token
    assert 0 < records[4]["val_loss_speech"] < 20
