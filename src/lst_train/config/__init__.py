"""Configuration, the ground floor: one module per recipe section (model, patching, data, training, evaluation),
the root `Config` and its loader, and the sweep file (config.sweep). Imports nothing else of lst_train."""

from lst_train.config.data import (CodecConfig, CodecKind, DataConfig, InterleaveConfig, SourceConfig, SourceKind,
                                   source_names, source_shares)
from lst_train.config.errors import ConfigError
from lst_train.config.evaluation import EvalSetConfig, EvalSetting, EvaluationConfig
from lst_train.config.loader import Config, config_changes, error_line, load_config, to_yaml
from lst_train.config.model import Arch, AttentionBackend, KernelBackend, ModelConfig, Pooling, StackConfig, VocabConfig
from lst_train.config.patching import PatchingConfig, PatchStrategy, Silence
from lst_train.config.training import (ActivationCheckpoint, CheckpointConfig, Device, LRSchedule, Precision,
                                       TrainingConfig)

__all__ = ["ActivationCheckpoint", "Arch", "AttentionBackend", "CheckpointConfig", "CodecConfig", "CodecKind", "Config",
           "ConfigError", "DataConfig", "Device", "EvalSetConfig", "EvalSetting", "EvaluationConfig",
           "InterleaveConfig", "KernelBackend", "LRSchedule", "ModelConfig", "PatchStrategy", "PatchingConfig",
           "Pooling", "Precision", "Silence", "SourceConfig", "SourceKind", "StackConfig", "TrainingConfig",
           "VocabConfig", "config_changes", "error_line", "load_config", "source_names", "source_shares", "to_yaml"]
