"""`lst-train train CONFIG`: the training loop (torchtitan's step flow, our own lean loop)."""

import logging
import os
import sys
import time

import torch
import torch.distributed as dist

from lst_train.config import Config, to_yaml
from lst_train.data.dataset import build_dataloader
from lst_train.data.skips import merge_skip_counts
from lst_train.data.config import source_names
from lst_train.data.stats import LoaderStats, token_shares
from lst_train.evaluation.during_training import TrainingEvaluator
from lst_train.flops import batch_flops
from lst_train.loss import IGNORE_INDEX, next_token_loss_sums
from lst_train.model import build_model
from lst_train.model.init import initialize_parameters
from lst_train.trainer.checkpointing import Checkpointer, TrainState
from lst_train.trainer.distributed import World, all_reduce_max, all_reduce_sum, init_world
from lst_train.trainer.metrics import MetricsWriter, memory_gb, peak_flops
from lst_train.trainer.optim import build_lr_schedulers, build_optimizers
from lst_train.trainer.parallelize import parallelize
from lst_train.trainer.preemption import PreemptionFlag

LOG = logging.getLogger("lst_train.train")
BATCH_TENSORS = ("tokens", "patch_lengths", "closed_early", "labels")


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
        self.world = init_world(cfg.training.device)
        _setup_logging(self.world, cfg.run_dir)
        if self.world.is_main:
            with open(os.path.join(cfg.run_dir, "config.yaml"), "w") as f:
                f.write(to_yaml(cfg))
        torch.manual_seed(cfg.training.seed + self.world.rank)
        self.model = build_sharded_model(cfg, self.world)
        self.vocab = self.model.vocab
        self.optimizers = build_optimizers(self.model, cfg.training, cfg.model.arch, self.world.device.type)
        self.lr_schedulers = build_lr_schedulers(self.optimizers, cfg.training)
        self.loader = build_dataloader(cfg, self.world.rank, self.world.world_size)
        self.state = TrainState(to_yaml(cfg))
        self.checkpointer = Checkpointer(cfg.checkpoint, cfg.run_dir, self.world.rank, self.model, self.optimizers,
                                         self.lr_schedulers, self.loader, self.state)
        self.metrics = MetricsWriter(cfg.run_dir, self.world.is_main)
        self.peak = peak_flops(cfg.training.peak_tflops, self.world.device)
        self.loader_stats = LoaderStats()
        self.evaluator = TrainingEvaluator(cfg, self.model, self.world.rank, self.world.world_size)

    def _to_device(self, batch: dict) -> dict:
        return {k: batch[k].to(self.world.device, non_blocking=True) for k in BATCH_TENSORS}

    def train_step(self, micro_batches: list[dict]) -> dict:
        """Forward/backward over the micro-batches, the loss normalized by the global number of valid targets."""
        world = self.world
        local_targets = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in micro_batches)
        global_targets = all_reduce_sum([local_targets], world.device)[0]
        totals = torch.zeros(5, dtype=torch.float64, device=world.device)
        for batch in micro_batches:
            b = self._to_device(batch)
            logits = self.model(b["tokens"], b["patch_lengths"], b["closed_early"])
            sums = next_token_loss_sums(logits, b["labels"], self.vocab)
            # FSDP averages gradients over ranks: scale by the world size to get the global token mean.
            (sums.total * world.world_size / max(global_targets, 1.0)).backward()
            totals += torch.stack([sums.total.detach(), sums.text.detach(), sums.speech.detach(),
                                   sums.n_text.double(), sums.n_speech.double()]).double()
        clip = self.cfg.training.grad_clip if self.cfg.training.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip, foreach=True)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        lr = self.optimizers.optimizers[0].param_groups[-1]["lr"]
        self.optimizers.step()
        self.lr_schedulers.step()
        self.optimizers.zero_grad()
        dist.all_reduce(totals)
        total, text, speech, n_text, n_speech = totals.tolist()
        # A modality absent from the step has no loss (null), not 0.
        return {"loss": total / max(global_targets, 1.0), "loss_text": text / n_text if n_text else None,
                "loss_speech": speech / n_speech if n_speech else None, "lr": lr, "grad_norm": float(grad_norm)}

    def _throughput(self, micro_batches: list[dict], seconds: float, wait: float) -> dict:
        stats = [sum(float(b["row_stats"][k].sum()) for b in micro_batches)
                 for k in ("tokens", "patches", "speech_seconds")]
        flops = sum(batch_flops(self.cfg.model, b["tokens"], b["patch_lengths"], b["closed_early"]).training
                    for b in micro_batches)
        tokens, patches, speech, flops = all_reduce_sum(stats + [float(flops)], self.world.device)
        self.state.tokens_seen += int(tokens)
        self.state.flops_seen += flops
        return {"tokens_per_s": tokens / seconds, "patches_per_s": patches / seconds,
                "speech_seconds_per_s": speech / seconds,
                "mfu": flops / (seconds * self.peak * self.world.world_size) if self.peak else 0.0,
                "mem_gb": memory_gb(self.world.device), "data_wait_frac": wait / seconds,
                "tokens_seen": self.state.tokens_seen, "flops_seen": self.state.flops_seen}

    def _skipped(self) -> dict:
        gathered = [None] * self.world.world_size
        dist.all_gather_object(gathered, self.loader_stats.skipped)
        return merge_skip_counts(gathered)

    def _token_shares(self) -> dict:
        """Each data source's realised share of the tokens trained on since this process started, over all ranks."""
        names = source_names(self.cfg.data.sources)
        tokens = self.loader_stats.source_tokens or [0] * len(names)
        return dict(zip(names, token_shares(all_reduce_sum([float(t) for t in tokens], self.world.device))))

    def run(self) -> None:
        cfg = self.cfg
        resumed = self.checkpointer.resume()
        LOG.info("%s at step %d of %d on %d rank(s), %s", "resumed" if resumed is not None else "starting",
                 self.state.step, cfg.training.steps, self.world.world_size, self.world.device)
        preemption = PreemptionFlag(os.path.join(cfg.run_dir, ".pids"), self.world.rank)
        batches = iter(self.loader)
        last = cfg.training.stop_at or cfg.training.steps
        while self.state.step < last:
            start = time.perf_counter()
            micro_batches = []
            for _ in range(cfg.training.grad_accum_steps):
                micro_batches.append(next(batches))
                self.loader_stats.update(micro_batches[-1])
            wait = time.perf_counter() - start
            record = self.train_step(micro_batches)
            self.state.step += 1
            record = {"step": self.state.step, **record,
                      **self._throughput(micro_batches, time.perf_counter() - start, wait)}
            evaluated = self.evaluator.due(self.state.step)
            if evaluated:
                record.update(self.evaluator.run())
            if evaluated or self.state.step % cfg.training.log_interval == 0 or self.state.step == last:
                record["skipped"] = self._skipped()
                record["source_token_shares"] = self._token_shares()
                self.metrics.write(record)
            stop = all_reduce_max(float(preemption.requested), self.world.device) > 0
            self.checkpointer.save(self.state.step, force=stop or self.state.step == last)
            if stop:
                LOG.warning("preemption signal: saved step %d, exiting", self.state.step)
                break
        self.checkpointer.close()
        self.metrics.close()
        preemption.close()


def train(cfg: Config) -> None:
    trainer = Trainer(cfg)
    trainer.run()
    dist.destroy_process_group()
