"""Typed config of training, checkpointing and parallelism (the `training` and `checkpoint` sections)."""

from dataclasses import dataclass
from enum import StrEnum

from lst_train.config.errors import check

COMPILE_SWITCHES = ("auto", "true", "false")


class LRSchedule(StrEnum):
    cosine = "cosine"
    wsd = "wsd"


class ActivationCheckpoint(StrEnum):
    none = "none"
    selective = "selective"
    full = "full"


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class TrainingConfig:
    steps: int = 1000
    """Optimizer steps of the run (the LR schedule and curriculum patching are laid over them); with flop_budget,
    the expected number of steps, in which warmup_steps and the schedule are counted."""
    flop_budget: float = 0.0
    """Training FLOPs (fwd+bwd, the exact count summed over ranks) the run spends; 0 = run `steps` steps. The run
    ends at the step whose FLOPs are nearest the budget, and the LR schedule is laid over FLOPs: after F of the
    budget it stands where it would after F / flop_budget × steps steps. Equal-compute comparisons set it."""
    stop_at: int = 0
    """Stop (with a checkpoint) after this step without changing the schedule, e.g. to fit a job's time limit;
    0 = run to `steps`."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step on each rank."""
    seed: int = 0
    """Seed of the weight init and of everything random in training."""
    lr: float = 4e-4
    """Peak learning rate."""
    local_lr_multiplier: float = 1.0
    """LR of the patch encoder and decoder relative to `lr` (LST only)."""
    warmup_steps: int = 100
    """Linear warmup steps."""
    schedule: LRSchedule = LRSchedule.cosine
    """'cosine' (decay to min_lr_ratio after warmup) or 'wsd' (warmup, stable, decay over the last decay_ratio)."""
    decay_ratio: float = 0.2
    """WSD: fraction of the steps spent decaying."""
    min_lr_ratio: float = 0.01
    """Final LR as a fraction of `lr`."""
    weight_decay: float = 0.1
    """AdamW weight decay (not applied to norms and embeddings)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""
    max_bad_steps: int = 5
    """A step whose global gradient norm is NaN or inf is not applied (weights and optimizer state unchanged; its
    data and FLOPs still count), and is logged with its documents; after this many in a row the run saves a
    checkpoint and stops with an error (0: never stop). Costs one device-to-host read of the norm per step."""
    device: Device = Device.auto
    """'auto' (cuda if available, else cpu), 'cpu' or 'cuda'; the process group is nccl on cuda, gloo on cpu."""
    mixed_precision: Precision = Precision.auto
    """FSDP2 parameter dtype: 'auto' (bf16 on cuda, fp32 on cpu), 'fp32' or 'bf16'; gradients reduce in fp32."""
    activation_checkpoint: ActivationCheckpoint = ActivationCheckpoint.none
    """'none', 'selective' (every other block) or 'full' (every block)."""
    compile: str = "auto"
    """torch.compile each transformer block: 'auto' (on CUDA, where it pays; off on CPU, where compiling costs more
    than short runs gain), 'true' or 'false'. A string, not an Enum: YAML and the command line give true/false as
    booleans."""
    collective_timeout_s: float = 1800.0
    """Seconds a collective waits for the other ranks before this rank fails with an error naming its rank and step:
    a stuck or dead peer becomes an error (and a torchrun restart), not a silent hang. It must exceed the slowest
    rank's data step and checkpoint write. Gloo raises it; NCCL's watchdog aborts the process with its own line."""
    log_interval: int = 1
    """Steps between metric lines (console, RUN_DIR/metrics.jsonl, TensorBoard)."""
    peak_tflops: float = 0.0
    """Peak dense TFLOP/s of one device for MFU; 0 = known value of the detected GPU (MFU 0 on CPU)."""


@dataclass
class CheckpointConfig:
    enabled: bool = True
    """False: no checkpoint is saved or loaded (throughput benchmarks, smoke runs)."""
    interval: int = 500
    """Steps between checkpoints (and always at the last step)."""
    keep_last: int = 3
    """Checkpoints kept (older ones are deleted; 0 keeps all)."""
    async_save: bool = False
    """Save in a background thread (DCP async), overlapping the next steps."""
    stop_on_save_error: bool = False
    """A save that fails (disk full, unwritable) is logged in one line and its partial folder removed; False: training
    goes on and the next interval tries again; True: the run stops. A failed save at the last step or at preemption
    always stops the run (nothing would retry it)."""
    resume: str = "auto"
    """'auto' (latest complete checkpoint in RUN_DIR, if any), 'none' (start fresh), or a step number."""
    initial_model: str = ""
    """Absolute path of a checkpoint step folder to take model weights from when RUN_DIR has none (fine-tuning)."""


def validate_training(training: TrainingConfig, checkpoint: CheckpointConfig) -> None:
    """Start-up checks of the training and checkpoint sections (raise the one-line ConfigError)."""
    t = training
    check(t.steps >= 1, "training.steps", f"must be >= 1, got {t.steps}")
    check(t.flop_budget >= 0, "training.flop_budget", f"must be >= 0 (0 = run training.steps), got {t.flop_budget}")
    check(0 <= t.stop_at <= t.steps, "training.stop_at", f"must be in [0, training.steps={t.steps}], got {t.stop_at}")
    check(t.grad_accum_steps >= 1, "training.grad_accum_steps", f"must be >= 1, got {t.grad_accum_steps}")
    check(t.lr > 0, "training.lr", f"must be > 0, got {t.lr}")
    check(0 <= t.warmup_steps <= t.steps, "training.warmup_steps", f"must be in [0, training.steps={t.steps}], "
          f"got {t.warmup_steps}")
    check(0 < t.decay_ratio <= 1, "training.decay_ratio", f"must be in (0, 1], got {t.decay_ratio}")
    check(0 <= t.min_lr_ratio <= 1, "training.min_lr_ratio", f"must be in [0, 1], got {t.min_lr_ratio}")
    check(t.local_lr_multiplier > 0, "training.local_lr_multiplier", f"must be > 0, got {t.local_lr_multiplier}")
    for name in ("beta1", "beta2"):
        check(0 <= getattr(t, name) < 1, f"training.{name}", f"must be in [0, 1), got {getattr(t, name)}")
    check(t.weight_decay >= 0, "training.weight_decay", f"must be >= 0, got {t.weight_decay}")
    check(t.grad_clip >= 0, "training.grad_clip", f"must be >= 0 (0 = no clipping), got {t.grad_clip}")
    check(t.max_bad_steps >= 0, "training.max_bad_steps", f"must be >= 0 (0 = never stop), got {t.max_bad_steps}")
    check(t.collective_timeout_s > 0, "training.collective_timeout_s", f"must be > 0, got {t.collective_timeout_s}")
    check(t.peak_tflops >= 0, "training.peak_tflops", f"must be >= 0 (0 = the device's, if known), got {t.peak_tflops}")
    t.compile = str(t.compile).lower()  # YAML/CLI booleans arrive as 'True' / 'False'
    check(t.compile in COMPILE_SWITCHES, "training.compile",
          f"must be one of {COMPILE_SWITCHES}, got {t.compile!r}")
    check(t.log_interval >= 1, "training.log_interval", f"must be >= 1, got {t.log_interval}")
    c = checkpoint
    check(c.interval >= 1, "checkpoint.interval", f"must be >= 1, got {c.interval}")
    check(c.keep_last == 0 or c.keep_last >= 2, "checkpoint.keep_last",
          f"must be 0 (keep all) or >= 2 (the newest may be mid-save), got {c.keep_last}")
    check(c.resume in ("auto", "none") or c.resume.isdigit(), "checkpoint.resume",
          f"must be 'auto', 'none' or a step number, got {c.resume!r}")
    check(not c.initial_model or c.initial_model.startswith("/"), "checkpoint.initial_model",
          f"must be an absolute path to a checkpoint step folder, got {c.initial_model!r}")
