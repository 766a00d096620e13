"""Configuration, the ground floor: one module per recipe section (model, patching, data, training, evaluation),
the root `Config` and its loader, and the sweep file (config.sweep). Imports nothing else of lst_train."""

from lst_train.config.data import CodecConfig, DataConfig, InterleaveConfig, SourceConfig, source_names, source_shares
from lst_train.config.errors import ConfigError
from lst_train.config.evaluation import EvalSetConfig, EvaluationConfig
from lst_train.config.loader import Config, error_line, load_config, to_yaml
from lst_train.config.model import ModelConfig, StackConfig, VocabConfig
from lst_train.config.patching import PatchingConfig
from lst_train.config.training import CheckpointConfig, TrainingConfig

__all__ = ["CheckpointConfig", "CodecConfig", "Config", "ConfigError", "DataConfig", "EvalSetConfig", "EvaluationConfig",
           "InterleaveConfig", "ModelConfig", "PatchingConfig", "SourceConfig", "StackConfig", "TrainingConfig",
           "VocabConfig", "error_line", "load_config", "source_names", "source_shares", "to_yaml"]
