"""Typed configuration: omegaconf structured dataclasses, loaded from a YAML recipe plus "a.b=c" overrides.

Every mistake a user can make in a recipe (unknown key, wrong type, missing value, incompatible options) is
reported as one `ConfigError` line that names the key and says how to fix it. Each section validates itself
(lst_train.config.model, .patching, .data, .training, .evaluation); this module holds the recipe's root and the
loading.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lst_train.config.data import DataConfig, validate_data
from lst_train.config.errors import ConfigError, check
from lst_train.config.evaluation import EvaluationConfig, validate_evaluation
from lst_train.config.model import ModelConfig, validate_model
from lst_train.config.patching import PatchingConfig, validate_patching
from lst_train.config.training import CheckpointConfig, TrainingConfig, validate_training


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


def validate(cfg: Config) -> None:
    """Every section's start-up checks."""
    validate_model(cfg.model)
    validate_patching(cfg.patching)
    validate_training(cfg.training, cfg.checkpoint)
    validate_evaluation(cfg.evaluation)
    check(bool(cfg.run_dir), "run_dir", "must be a directory path, e.g. runs/my_run")
    validate_data(cfg.data)


def error_line(err: OmegaConfBaseException, source: str, key: str = "?") -> str:
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
            raise ConfigError(error_line(err, "override", key)) from None
        raise ConfigError(f"override: {key}: {str(err).splitlines()[0]}") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML recipe (optional) onto the defaults, apply "a.b=c" overrides, validate, return a typed Config."""
    merged = OmegaConf.structured(Config)
    try:
        if path is not None:
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
    except OmegaConfBaseException as err:
        raise ConfigError(error_line(err, str(path))) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the recipe ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    for item in overrides:
        merged = _apply_override(merged, item)
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(error_line(err, str(path or "config"))) from None
    validate(cfg)
    return cfg



def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (run snapshot, checkpoints, exports)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
