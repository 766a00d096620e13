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
from omegaconf import DictConfig, ListConfig, OmegaConf
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
    _check_row_cap(cfg)
    speech = any(source.kind == "speech" for source in cfg.data.sources)
    check(not speech or cfg.data.codec.kind != "units" or cfg.model.vocab.n_codebooks == 1, "model.vocab.n_codebooks",
          f"data.codec.kind=units reads one codebook (KEY.units.json); set model.vocab.n_codebooks=1, got "
          f"{cfg.model.vocab.n_codebooks}")


def _check_row_cap(cfg: Config) -> None:
    """data.max_row_tokens must hold <bos> and the longest LST patch, or a row would pass it (the packer always
    takes a row's first patch)."""
    cap, patching, codebooks = cfg.data.max_row_tokens, cfg.patching, cfg.model.vocab.n_codebooks
    if not cap or cfg.model.arch != "lst":
        return
    frames = patching.size if patching.strategy == "static" else max(patching.size, patching.max_len)
    need = 1 + frames * codebooks
    check(cap >= need, "data.max_row_tokens",
          f"must be 0 (no cap) or >= {need}: <bos> and the longest patch ({frames} frames x model.vocab.n_codebooks="
          f"{codebooks}), got {cap}")


def _nodes(raw, prefix: str = ""):
    """(path, value) of every node of a plain config, paths as 'data.sources[1].kind'."""
    yield prefix, raw
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else ()
    for name, child in items:
        yield from _nodes(child, f"{prefix}[{name}]" if isinstance(raw, list) else f"{prefix}.{name}".lstrip("."))


def error_line(err: OmegaConfBaseException, source: str, key: str = "?", raw=None) -> str:
    """'KEY: what is wrong (in SOURCE)': like every ConfigError, the line starts with the key to fix. omegaconf names
    a bad field of a list item without the item's path (`kind` for data.sources[1].kind): `raw`, the YAML or
    override as given, supplies it."""
    key = getattr(err, "full_key", None) or key
    if raw is not None and "." not in key:
        plain = OmegaConf.to_container(raw) if isinstance(raw, (DictConfig, ListConfig)) else raw
        value = getattr(err, "value", None)
        key = next((path for path, node in _nodes(plain) if (value is None or node == value) and
                    (path == key or path.endswith(("." + key, "]" + key)))), key)
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "not in" in message:
        message += " (unknown key: remove it or fix its spelling)"
    return f"{key}: {message} (in {source})"


def _apply_override(merged, item: str):
    """Apply one "a.b=c" override; list items are addressed as "data.sources[0].path=..."; "key=" sets ""."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. model.encoder.dim=64")
    key, value = item.split("=", 1)
    raw = None
    try:
        if "[" in key:
            OmegaConf.update(merged, key, yaml.safe_load(value) if value else "", merge=True)
            return merged
        raw = OmegaConf.from_dotlist([item if value else f"{key}=''"])
        return OmegaConf.merge(merged, raw)
    except (OmegaConfBaseException, yaml.YAMLError, TypeError, ValueError, IndexError) as err:
        if isinstance(err, OmegaConfBaseException):
            raise ConfigError(error_line(err, f"override {item!r}", key, raw)) from None
        raise ConfigError(f"{key}: {str(err).splitlines()[0]} (in override {item!r})") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML recipe (optional) onto the defaults, apply "a.b=c" overrides, validate, return a typed Config."""
    merged = OmegaConf.structured(Config)
    raw = None
    try:
        if path is not None:
            raw = OmegaConf.load(path)
            merged = OmegaConf.merge(merged, raw)
    except OmegaConfBaseException as err:
        raise ConfigError(error_line(err, str(path), raw=raw)) from None
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


def config_changes(saved_yaml: str, current_yaml: str) -> list[str]:
    """`KEY: SAVED -> CURRENT` for each setting of a resumed run that differs from the one its checkpoint was written
    with (run_dir and checkpoint.resume name where and how to resume, so they are left out)."""
    def flat(node, prefix: str = "") -> dict:
        if not isinstance(node, dict):
            return {prefix: node}
        return {key: value for name, child in node.items()
                for key, value in flat(child, f"{prefix}.{name}" if prefix else name).items()}

    saved, current = (flat(OmegaConf.to_container(OmegaConf.create(text))) for text in (saved_yaml, current_yaml))
    return [f"{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in sorted(saved.keys() | current.keys())
            if saved.get(key) != current.get(key) and key not in ("run_dir", "checkpoint.resume")]
