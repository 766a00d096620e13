"""Typed configuration: omegaconf structured dataclasses, loaded from a YAML recipe plus "a.b=c" overrides.

Every mistake a user can make in a recipe (unknown key, wrong type, missing value, incompatible options) is
reported as one `ConfigError` line that names the key and says how to fix it.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lst_train.data.config import DataConfig, validate_data
from lst_train.evaluation.config import EvaluationConfig, validate_evaluation
from lst_train.trainer.config import CheckpointConfig, TrainingConfig, validate_training

ARCHS = ("lst", "baseline")
POOLINGS = ("max", "mean")
PATCHERS = ("static", "aligned", "mixed", "curriculum")
SILENCES = ("separate", "merged")


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming the key and the fix."""


@dataclass
class VocabConfig:
    text_size: int = 4096
    """Number of text BPE ids; must equal the tiktoken ranks file's size."""
    speech_codebook_size: int = 2048
    """Codes per speech codebook (Mimi: 2048; HuBERT units: e.g. 500)."""
    n_codebooks: int = 1
    """Speech codebooks per frame, flattened frame by frame (1 = Mimi's semantic codebook only)."""


@dataclass
class StackConfig:
    n_layers: int = 1
    """Transformer blocks in this stack."""
    dim: int = 64
    """Model width of this stack."""
    n_heads: int = 4
    """Attention heads; must divide dim."""
    window: int = 0
    """Self-attention window in positions of this stack (tokens locally, patches globally); 0 = whole document."""


@dataclass
class ModelConfig:
    arch: str = "lst"
    """'lst' (patch encoder + global transformer + patch decoder) or 'baseline' (global transformer over tokens)."""
    vocab: VocabConfig = field(default_factory=VocabConfig)
    """Vocabulary layout shared by model, data and evaluation."""
    encoder: StackConfig = field(default_factory=lambda: StackConfig(n_layers=1, dim=32, n_heads=2, window=64))
    """Patch encoder (LST only)."""
    global_transformer: StackConfig = field(default_factory=lambda: StackConfig(n_layers=2, dim=64, n_heads=4))
    """The large transformer over patches (LST) or tokens (baseline)."""
    decoder: StackConfig = field(default_factory=lambda: StackConfig(n_layers=2, dim=32, n_heads=2, window=64))
    """Patch decoder (LST only); its width must equal the encoder's."""
    patch_slots: int = 2
    """k: query slots per patch; the global width must be k × the encoder width."""
    pooling: str = "max"
    """How the patch queries are initialised from the patch's token states: 'max' or 'mean'."""
    unpool_window: int = 1
    """Patches whose global outputs each decoder token attends to (1 = only the patch before its target's)."""
    rope_theta: float = 10000.0
    """RoPE base for every stack."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    ffn_multiple_of: int = 256
    """SwiGLU hidden width = 8/3 × dim rounded up to a multiple of this."""
    init_std: float = 0.02
    """Standard deviation of the normal weight init (output projections are scaled down by depth)."""
    attention: str = "auto"
    """Self-attention: "auto" (FlexAttention block masks on CUDA, SDPA with a dense mask on CPU), "sdpa" or "flex"
    (flex has no CPU backward)."""
    output_chunk: int = 8192
    """Training loss: tokens whose logits the output head computes at once (bounds memory: fp32 logits of a whole
    [B, T, V] batch are never held)."""
    kernels: str = "auto"
    """Patch-op backend (lst_kernels): "auto": Triton on CUDA, the reference on CPU; "triton" / "reference" force
    one."""


@dataclass
class PatchingConfig:
    strategy: str = "static"
    """How speech spans are cut: 'static' (runs of `size` frames), 'aligned' (one patch per word), 'mixed'
    (aligned with probability `mixed_prob` per document, else static), 'curriculum' (aligned with a probability
    falling from 1 to 0 between `curriculum_start` and `curriculum_end`)."""
    size: int = 4
    """Frames per static patch (p); at 12.5 Hz Mimi, p=2 is 160 ms."""
    silence: str = "separate"
    """Aligned: the frames between words form their own patches ('separate') or join the next word ('merged')."""
    max_len: int = 16
    """Aligned: longer words or silences are split into patches of at most this many frames."""
    mixed_prob: float = 0.5
    """Mixed: probability q that a document is patched aligned."""
    curriculum_start: float = 1 / 3
    """Curriculum: fraction of training.steps until which every document is aligned (tau1)."""
    curriculum_end: float = 2 / 3
    """Curriculum: fraction of training.steps from which every document is static (tau2)."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model architecture."""
    patching: PatchingConfig = field(default_factory=PatchingConfig)
    """Patching of speech spans (LST); the baseline ignores it."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data sources, tokenizers and packing."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Optimization, precision, parallelism and logging."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Distributed checkpoints in RUN_DIR/checkpoints."""
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    """Evaluation sets and validation loss during training."""
    run_dir: str = "runs/debug"
    """Where the run keeps checkpoints, metrics.jsonl, TensorBoard logs and the resolved config."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _validate_stack(stack: StackConfig, key: str) -> None:
    _check(stack.n_layers >= 1, f"{key}.n_layers", f"must be >= 1, got {stack.n_layers}")
    _check(stack.dim >= 1, f"{key}.dim", f"must be >= 1, got {stack.dim}")
    _check(stack.n_heads >= 1 and stack.dim % stack.n_heads == 0, f"{key}.n_heads",
           f"must divide {key}.dim={stack.dim}, got {stack.n_heads}")
    _check((stack.dim // stack.n_heads) % 2 == 0, f"{key}.n_heads",
           f"head width dim/n_heads={stack.dim // stack.n_heads} must be even for RoPE")
    _check(stack.window >= 0, f"{key}.window", f"must be >= 0 (0 = whole document), got {stack.window}")


def _validate_patching(p: PatchingConfig) -> None:
    _check(p.size >= 1, "patching.size", f"must be >= 1, got {p.size}")
    _check(p.silence in SILENCES, "patching.silence", f"must be one of {SILENCES}, got {p.silence!r}")
    _check(p.max_len >= 1, "patching.max_len", f"must be >= 1, got {p.max_len}")
    _check(0.0 <= p.mixed_prob <= 1.0, "patching.mixed_prob", f"must be in [0, 1], got {p.mixed_prob}")
    _check(0.0 <= p.curriculum_start <= p.curriculum_end <= 1.0, "patching.curriculum_start",
           f"need 0 <= curriculum_start <= curriculum_end <= 1, got {p.curriculum_start}, {p.curriculum_end}")


def validate(cfg: Config) -> None:
    """Check cross-field constraints that the types alone cannot express."""
    m = cfg.model
    _check(m.arch in ARCHS, "model.arch", f"must be one of {ARCHS}, got {m.arch!r}")
    for name in ("text_size", "speech_codebook_size", "n_codebooks"):
        value = getattr(m.vocab, name)
        _check(value >= 1, f"model.vocab.{name}", f"must be >= 1, got {value}")
    _validate_stack(m.global_transformer, "model.global_transformer")
    _check(m.ffn_multiple_of >= 1, "model.ffn_multiple_of", f"must be >= 1, got {m.ffn_multiple_of}")
    _check(m.output_chunk >= 1, "model.output_chunk", f"must be >= 1, got {m.output_chunk}")
    _check(m.rope_theta > 0, "model.rope_theta", f"must be > 0, got {m.rope_theta}")
    _check(m.attention in ("auto", "sdpa", "flex"), "model.attention",
           f"must be 'auto', 'sdpa' or 'flex', got {m.attention!r}")
    _check(m.kernels in ("auto", "triton", "reference"), "model.kernels",
           f"must be 'auto', 'triton' or 'reference', got {m.kernels!r}")
    _check(cfg.patching.strategy in PATCHERS, "patching.strategy",
           f"must be one of {PATCHERS}, got {cfg.patching.strategy!r}")
    _validate_patching(cfg.patching)
    validate_training(cfg.training, cfg.checkpoint, _check)
    validate_evaluation(cfg.evaluation, _check)
    _check(bool(cfg.run_dir), "run_dir", "must be a directory path, e.g. runs/my_run")
    validate_data(cfg.data, _check)
    if m.arch != "lst":
        return
    _validate_stack(m.encoder, "model.encoder")
    _validate_stack(m.decoder, "model.decoder")
    _check(m.pooling in POOLINGS, "model.pooling", f"must be one of {POOLINGS}, got {m.pooling!r}")
    _check(m.patch_slots >= 1, "model.patch_slots", f"must be >= 1, got {m.patch_slots}")
    _check(m.unpool_window >= 1, "model.unpool_window", f"must be >= 1, got {m.unpool_window}")
    _check(m.decoder.dim == m.encoder.dim, "model.decoder.dim",
           f"must equal model.encoder.dim={m.encoder.dim} (the decoder reads the encoder's token states), "
           f"got {m.decoder.dim}")
    want = m.patch_slots * m.encoder.dim
    _check(m.global_transformer.dim == want, "model.global_transformer.dim",
           f"must equal model.patch_slots × model.encoder.dim = {m.patch_slots} × {m.encoder.dim} = {want}, "
           f"got {m.global_transformer.dim}; change one of the three")


def _error_line(err: OmegaConfBaseException, source: str, key: str = "?") -> str:
    key = getattr(err, "full_key", None) or key
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "not in" in message:
        message += " (unknown key: remove it or fix its spelling)"
    return f"{source}: {key}: {message}"


def _apply_override(merged, item: str):
    """Apply one "a.b=c" override; list items are addressed as "data.sources[0].path=..."; "key=" sets ""."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. model.encoder.dim=64")
    key, raw = item.split("=", 1)
    try:
        if "[" in key:
            OmegaConf.update(merged, key, yaml.safe_load(raw) if raw else "", merge=True)
            return merged
        return OmegaConf.merge(merged, OmegaConf.from_dotlist([item if raw else f"{key}=''"]))
    except (OmegaConfBaseException, yaml.YAMLError, TypeError, ValueError, IndexError) as err:
        if isinstance(err, OmegaConfBaseException):
            raise ConfigError(_error_line(err, "override", key)) from None
        raise ConfigError(f"override: {key}: {str(err).splitlines()[0]}") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML recipe (optional) onto the defaults, apply "a.b=c" overrides, validate, return a typed Config."""
    merged = OmegaConf.structured(Config)
    try:
        if path is not None:
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
    except OmegaConfBaseException as err:
        raise ConfigError(_error_line(err, str(path))) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the recipe ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    for item in overrides:
        merged = _apply_override(merged, item)
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_error_line(err, str(path or "config"))) from None
    validate(cfg)
    return cfg



def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (run snapshot, checkpoints, exports)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
