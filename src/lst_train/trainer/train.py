"""`lst-train train CONFIG`: the training loop (torchtitan's step flow, our own lean loop)."""

import logging
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import Tensor

from lst_train.config import Config, config_changes, to_yaml
from lst_train.config.data import source_names
from lst_train.data.batch import Batch
from lst_train.data.dataset import build_dataloader
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.skips import REASONS
from lst_train.data.stats import LoaderStats, token_shares
from lst_train.evaluation.during_training import TrainingEvaluator
from lst_train.loss import IGNORE_INDEX, loss_sums, targets_of
from lst_train.model import build_model
from lst_train.model.init import initialize_parameters
from lst_train.runs import CONFIG, DIVERGED, write_finished
from lst_train.trainer.checkpointing import Checkpointer, TrainState
from lst_train.trainer.distributed import World, init_world
from lst_train.trainer.divergence import NonFiniteSteps, mark_diverged, refuse_if_diverged
from lst_train.trainer.flop_budget import FlopBudget
from lst_train.trainer.metrics import MetricsWriter, memory_gb, peak_flops
from lst_train.trainer.optim import build_lr_schedulers, build_optimizers
from lst_train.trainer.parallelize import parallelize
from lst_train.trainer.preemption import PreemptionFlag, remove_stale_pid_file

LOG = logging.getLogger("lst_train.train")


def _setup_logging(world: World, run_dir: str) -> None:
    """Console on every rank (warnings only off rank 0); rank 0 also appends to RUN_DIR/train.log."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if world.is_main:
        os.makedirs(run_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(run_dir, "train.log")))
    logging.basicConfig(level=logging.INFO if world.is_main else logging.WARNING, handlers=handlers, force=True,
                        format=f"[rank{world.rank}] %(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def build_sharded_model(cfg: Config, world: World) -> torch.nn.Module:
    """Meta build -> FSDP2 (+AC, compile) -> materialize on the device -> init from the seed."""
    with torch.device("meta"):
        model = build_model(cfg.model)
    parallelize(model, cfg.training, world.device)
    model.to_empty(device=world.device)
    initialize_parameters(model, model.init_plan(), cfg.training.seed)
    return model


class Trainer:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.world = init_world(cfg.training.device, cfg.training.collective_timeout_s)
        _setup_logging(self.world, cfg.run_dir)
        refuse_if_diverged(cfg.run_dir)
        self.pid_dir = os.path.join(cfg.run_dir, ".pids")
        remove_stale_pid_file(self.pid_dir, self.world.rank)
        if self.world.is_main:
            with open(os.path.join(cfg.run_dir, CONFIG), "w") as f:
                f.write(to_yaml(cfg))
        loader_spec = LoaderSpec.from_recipe(cfg)
        self.loader = build_dataloader(loader_spec, self.world.rank, self.world.world_size,  # bad paths fail first
                                       pin_memory=self.world.device.type == "cuda")
        torch.manual_seed(cfg.training.seed + self.world.rank)
        self.model = build_sharded_model(cfg, self.world)
        self.vocab = self.model.vocab
        self.optimizers = build_optimizers(self.model, cfg.training, cfg.model.arch, self.world.device.type)
        self.lr_schedulers = build_lr_schedulers(self.optimizers, cfg.training)
        self.state = TrainState(to_yaml(cfg))
        self.checkpointer = Checkpointer(cfg.checkpoint, cfg.run_dir, self.world.rank, self.world.world_size,
                                         self.model, self.optimizers, self.lr_schedulers, self.loader, self.state)
        self.peak = peak_flops(cfg.training.peak_tflops, self.world.device)
        self.loader_stats = LoaderStats()
        self.budget = FlopBudget(cfg.training.flop_budget, cfg.training.steps) if cfg.training.flop_budget else None
        self.evaluator = TrainingEvaluator(cfg.evaluation, loader_spec, self.model, self.world.rank,
                                           self.world.world_size)

    def train_step(self, micro_batches: list[Batch], preempted: bool) -> tuple[Tensor, Tensor, bool, bool]:
        """Forward/backward over the micro-batches, the loss normalized by the global number of valid targets, and the
        optimizer step. Returns this rank's loss sums (total, text, speech, n_text, n_speech) and the global gradient
        norm as device tensors (read only when the step is logged), whether the update was applied, and whether any
        rank was asked to stop (`preempted`, summed in the step's all_reduce of the target count). The one host read
        per step takes both flags: the norm's finiteness (with training.max_bad_steps), the same on every rank because
        the norm is global, so all ranks skip together, and the stop request, the same on every rank too."""
        world = self.world
        local_targets = sum(int((b.labels != IGNORE_INDEX).sum()) for b in micro_batches)
        global_counts = torch.tensor([float(local_targets), float(preempted)], dtype=torch.float64,
                                     device=world.device)
        dist.all_reduce(global_counts)
        # FSDP averages gradients over ranks: scale by the world size to get the global token mean.
        scale = (world.world_size / global_counts[0].clamp(min=1.0)).float()
        totals = torch.zeros(5, dtype=torch.float64, device=world.device)
        for index, batch in enumerate(micro_batches):
            # Accumulate unsharded gradients locally; reduce-scatter once, in the last micro-batch's backward.
            self.model.set_requires_gradient_sync(index == len(micro_batches) - 1)
            b = batch.to(self.world.device, non_blocking=True)
            per_token = self.model(b.tokens, b.patch_lengths, b.closed_early, targets_of(b.labels))
            sums = loss_sums(per_token, b.labels, self.vocab)
            (sums.total * scale).backward()
            totals += torch.stack([sums.total.detach(), sums.text.detach(), sums.speech.detach(),
                                   sums.n_text.double(), sums.n_speech.double()]).double()
        clip = self.cfg.training.grad_clip if self.cfg.training.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip, foreach=True)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        applied, stop = torch.stack([torch.isfinite(grad_norm), global_counts[1] > 0]).tolist()
        if applied:
            self.optimizers.step()
        self.optimizers.zero_grad()
        return totals, grad_norm, applied, stop

    def _advance_schedule(self, local_flops: float) -> None:
        """One step of the LR schedule; with a FLOP budget, as many as the step's FLOPs (summed over ranks) are
        worth, and the FLOPs spent are counted here, exactly, after every step."""
        if self.budget is None:
            self.lr_schedulers.step()
            return
        self.state.flops_seen += self.budget.global_flops(local_flops)
        position = self.budget.schedule_position(self.state.flops_seen)
        while self.lr_schedulers.schedulers[0].last_epoch < position:
            self.lr_schedulers.step()

    def _finished(self) -> bool:
        """The run's end: `steps` steps, or with a FLOP budget, the step nearest the budget."""
        if self.budget is not None:
            return self.budget.reached(self.state.flops_seen, self.state.step)
        return self.state.step >= self.cfg.training.steps

    def _synchronize(self, totals: Tensor, pending: "PendingCounts") -> tuple[list[float], dict]:
        """The one reduction of a sync point (a logged or checkpointed step): this step's loss sums, the counts since
        the last sync point, each source's tokens and the skip counts by reason, summed over ranks in a single
        all_reduce. Updates tokens_seen / flops_seen; returns the step's loss sums and the summed counts."""
        skipped = self.loader_stats.skipped
        shares = self.loader_stats.source_tokens or [0] * len(self.cfg.data.sources)
        local = torch.tensor([*pending.values(), *shares, *(skipped.get(r, 0) for r in REASONS)],
                             dtype=torch.float64)
        reduced = torch.cat([totals, local.to(self.world.device)])
        dist.all_reduce(reduced)
        values = reduced.tolist()
        loss_totals, rest = values[:5], values[5:]
        tokens, patches, speech, flops, wait = rest[:5]
        self.state.tokens_seen += int(tokens)
        if self.budget is None:  # with a budget, counted after every step (_advance_schedule)
            self.state.flops_seen += flops
        counts = {"tokens": tokens, "patches": patches, "speech_seconds": speech, "flops": flops,
                  "wait": wait / self.world.world_size, "shares": rest[5: 5 + len(shares)],
                  "skipped": {r: int(n) for r, n in zip(REASONS, rest[5 + len(shares):]) if n}}
        return loss_totals, counts

    def _record(self, step: int, lr: float, loss_totals: list[float], n: dict, grad_norm: Tensor,
                seconds: float) -> dict:
        total, text, speech, n_text, n_speech = loss_totals
        targets = n_text + n_speech
        return {"step": step, "loss": total / max(targets, 1.0), "loss_text": text / n_text if n_text else None,
                "loss_speech": speech / n_speech if n_speech else None,  # a modality absent from the step: null
                "lr": lr, "grad_norm": float(grad_norm),
                "tokens_per_s": n["tokens"] / seconds, "patches_per_s": n["patches"] / seconds,
                "speech_seconds_per_s": n["speech_seconds"] / seconds,
                "mfu": n["flops"] / (seconds * self.peak * self.world.world_size) if self.peak else 0.0,
                "mem_gb": memory_gb(self.world.device), "data_wait_frac": n["wait"] / seconds,
                "tokens_seen": self.state.tokens_seen, "flops_seen": self.state.flops_seen,
                "skipped": n["skipped"], "bad_steps": self.state.bad_steps,
                "source_token_shares": dict(zip(source_names(self.cfg.data.sources), token_shares(n["shares"])))}

    def _bad_step(self, step: int, grad_norm: Tensor, micro_batches: list[Batch]) -> "NonFiniteSteps | None":
        """A step not applied: count and log it with this rank's documents; after max_bad_steps in a row, the
        error to stop with (once the step is logged and saved)."""
        self.state.bad_steps += 1
        self.state.bad_in_a_row += 1
        keys = sorted({key for batch in micro_batches for row in batch.keys for key in row})
        LOG.warning("step %d: gradient norm %s: update not applied (%d in a row, %d in this run); documents on rank "
                    "%d: %s", step, float(grad_norm), self.state.bad_in_a_row, self.state.bad_steps,
                    self.world.rank, ", ".join(keys[:20]) + (f" and {len(keys) - 20} more" if len(keys) > 20 else ""))
        limit = self.cfg.training.max_bad_steps
        if not limit or self.state.bad_in_a_row < limit:
            return None
        shards = sorted({key.rsplit(":", 1)[0] for key in keys})
        return NonFiniteSteps(
            f"stopping at step {step}: {limit} steps in a row (from step {step - limit + 1}) had a non-finite "
            f"gradient norm (training.max_bad_steps={limit}); the weights are those of step {step - limit}, saved "
            f"with the data position at step {step}; shards of the last step on rank {self.world.rank}: "
            f"{', '.join(shards)}. Check those documents or lower training.lr; {DIVERGED} in the run directory keeps "
            "restarts from continuing: delete it to resume")

    def run(self) -> None:
        cfg = self.cfg
        resumed = self.checkpointer.resume()
        # A resumed run logs again the steps after its checkpoint: TensorBoard drops its older copies of them.
        self.metrics = MetricsWriter(cfg.run_dir, self.world.is_main,
                                     purge_step=self.state.step + 1 if resumed is not None else None)
        if self.world.is_main:  # a requeue with other overrides: the schedule, the data, ... follow the new values
            for change in config_changes(self.state.saved_config, self.state.config_yaml):
                LOG.warning("resumed with a setting changed since the checkpoint: %s", change)
        LOG.info("%s at step %d of %d on %d rank(s), %s", "resumed" if resumed is not None else "starting",
                 self.state.step, cfg.training.steps, self.world.world_size, self.world.device)
        preemption = PreemptionFlag(self.pid_dir, self.world.rank)
        try:
            self._loop(preemption)
        except RuntimeError as err:
            found = next((str(err).find(sign) for sign in _PEER_FAILURES if sign in str(err)), -1)
            if found < 0:
                raise
            raise CollectiveFailure(
                f"rank {self.world.rank} of {self.world.world_size}, step {self.state.step + 1}: a collective failed "
                f"({str(err)[found:].splitlines()[0][:120]}): another rank stalled or died "
                f"(training.collective_timeout_s={cfg.training.collective_timeout_s:g})") from err
        finally:
            preemption.close()

    def _loop(self, preemption: PreemptionFlag) -> None:
        cfg = self.cfg
        batches = iter(self.loader)
        pending = PendingCounts()
        since = time.perf_counter()
        stop_at = cfg.training.stop_at or None
        finished = self._finished()
        while not finished and self.state.step != stop_at:
            start = time.perf_counter()
            micro_batches = []
            for _ in range(cfg.training.grad_accum_steps):
                micro_batches.append(next(batches))
                self.loader_stats.update(micro_batches[-1])
            pending.add(micro_batches, time.perf_counter() - start)
            totals, grad_norm, applied, stop = self.train_step(micro_batches, preemption.requested)
            lr = self.optimizers.optimizers[0].param_groups[-1]["lr"]  # the LR this step used
            self._advance_schedule(sum(batch.flops for batch in micro_batches))
            self.state.step += 1
            step = self.state.step
            if applied:
                self.state.bad_in_a_row = 0
            diverged = None if applied else self._bad_step(step, grad_norm, micro_batches)
            finished = self._finished()
            last = finished or step == stop_at or diverged is not None or stop
            # A stop (preemption) saves first: an evaluation could outlast the time left before the kill.
            evaluated = not stop and self.evaluator.due(step, finished)
            logged = evaluated or step % cfg.training.log_interval == 0 or last
            # Sync points: logged steps and checkpoint steps (a stop requested during step k is acted on after k+1).
            if not (logged or step % cfg.checkpoint.interval == 0):
                continue
            loss_totals, counts = self._synchronize(totals, pending)
            if logged:
                record = self._record(step, lr, loss_totals, counts, grad_norm, time.perf_counter() - since)
                if evaluated:
                    record.update(self.evaluator.run())
                self.metrics.write(record)
            pending, since = PendingCounts(), time.perf_counter()
            self.checkpointer.save(step, force=last)
            if stop:
                LOG.warning("preemption signal: saved step %d, exiting", step)
                break
            if diverged is not None:
                if self.world.is_main:
                    mark_diverged(cfg.run_dir, step)
                self.checkpointer.close()
                self.metrics.close()
                raise diverged
        if finished and self.world.is_main:
            write_finished(cfg.run_dir, self.state.step, self.state.flops_seen)
        self.checkpointer.close()
        self.metrics.close()


# What gloo's errors say when a peer stops answering (timeout) or its process is gone.
_PEER_FAILURES = ("Timed out waiting", "Connection closed by peer", "Connection reset by peer", "Broken pipe")


class CollectiveFailure(RuntimeError):
    """A collective did not complete: another rank stalled past training.collective_timeout_s, or died."""


class PendingCounts(dict):
    """This rank's tokens, patches, speech seconds, training FLOPs and data-wait seconds since the last sync point
    (host numbers from the batches' own statistics: counting them costs the device nothing)."""

    def __init__(self):
        super().__init__(tokens=0.0, patches=0.0, speech_seconds=0.0, flops=0.0, wait=0.0)

    def add(self, micro_batches: list[Batch], wait: float) -> None:
        for batch in micro_batches:
            for key in ("tokens", "patches", "speech_seconds"):
                self[key] += float(batch.row_stats[key].sum())
            self["flops"] += batch.flops
        self["wait"] += wait


def train(cfg: Config) -> None:
    trainer = Trainer(cfg)
    trainer.run()
    dist.destroy_process_group()
