"""Per-step metrics: a console line, RUN_DIR/metrics.jsonl and TensorBoard (rank 0 writes)."""

import json
import logging
import os
import resource

import torch

from lst_train.runs import METRICS

LOG = logging.getLogger("lst_train.train")

# Peak dense bf16 TFLOP/s per device, by substring of the CUDA device name.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "4090": 165.0}


def peak_flops(configured_tflops: float, device: torch.device) -> float:
    """Peak FLOP/s of one device: the configured value, else the detected GPU's; 0 when unknown (CPU)."""
    if configured_tflops > 0:
        return configured_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in PEAK_TFLOPS.items():
            if key in name:
                return tflops * 1e12
        LOG.warning("unknown GPU %r: set training.peak_tflops for MFU", name)
    return 0.0


def memory_gb(device: torch.device) -> float:
    """Peak memory: CUDA allocator peak on GPUs, the process's max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class MetricsWriter:
    def __init__(self, run_dir: str, enabled: bool, purge_step: int | None = None):
        self.enabled = enabled
        self.jsonl = None
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            os.makedirs(run_dir, exist_ok=True)
            self.jsonl = open(os.path.join(run_dir, METRICS), "a", buffering=1)
            self.tb = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=purge_step)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(record) + "\n")
        step = record["step"]
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.tb.add_scalar(key if "/" in key else f"train/{key}", value, step)
            elif isinstance(value, dict):
                for sub, count in value.items():
                    self.tb.add_scalar(f"{key}/{sub}", count, step)
        def fmt(value):
            return "-" if value is None else f"{value:.4f}"

        LOG.info("step %d | loss %.4f (text %s, speech %s) | lr %.2e | grad %.3f | %.0f tok/s | %.1f speech s/s"
                 " | mfu %.1f%% | mem %.2f GB | data wait %.0f%%", step, record["loss"], fmt(record["loss_text"]),
                 fmt(record["loss_speech"]), record["lr"], record["grad_norm"], record["tokens_per_s"],
                 record["speech_seconds_per_s"], 100 * record["mfu"], record["mem_gb"], 100 * record["data_wait_frac"])

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()
