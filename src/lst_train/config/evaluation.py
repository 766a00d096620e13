"""Typed config of evaluation during training (the `evaluation` section)."""

from dataclasses import dataclass, field
from enum import StrEnum

from lst_train.config.data import SourceConfig, validate_sources
from lst_train.config.errors import check


class EvalSetting(StrEnum):
    """Modality of an item's context and ending: s2s speech→speech, t2t, s2t, t2s."""

    s2s = "s2s"
    t2t = "t2t"
    s2t = "s2t"
    t2s = "t2s"


@dataclass
class EvalSetConfig:
    name: str = ""
    """Name in metrics.jsonl and TensorBoard, e.g. storycloze_2way."""
    path: str = ""
    """Items file (jsonl, see lst_train.evaluation.items)."""
    settings: list[EvalSetting] = field(default_factory=lambda: list(EvalSetting))
    """Which of s2s, t2t, s2t, t2s to score."""


@dataclass
class EvaluationConfig:
    interval: int = 0
    """Steps between evaluations during training (0 = none but `at_end`)."""
    at_end: bool = True
    """Also evaluate at the run's last step (a FLOP-budget run's last step is known only when it comes)."""
    sets: list[EvalSetConfig] = field(default_factory=list)
    """Multiple-choice sets scored at each evaluation (every rank scores every item: keep them small)."""
    validation: list[SourceConfig] = field(default_factory=list)
    """Held-out sources for the validation loss per modality (same format as data.sources)."""
    validation_batches: int = 10
    """Batches of the validation loader per evaluation (the same batches every time)."""
    batch_size: int = 16
    """Rows per forward pass when scoring endings."""


def validate_evaluation(cfg: EvaluationConfig) -> None:
    """Start-up checks of the evaluation section (raise the one-line ConfigError)."""
    check(cfg.interval >= 0, "evaluation.interval", f"must be >= 0 (0 = off), got {cfg.interval}")
    check(cfg.validation_batches >= 1, "evaluation.validation_batches", f"must be >= 1, got {cfg.validation_batches}")
    check(cfg.batch_size >= 1, "evaluation.batch_size", f"must be >= 1, got {cfg.batch_size}")
    for i, eval_set in enumerate(cfg.sets):
        check(bool(eval_set.name and eval_set.path), f"evaluation.sets[{i}]", "needs a name and a path")
    validate_sources(cfg.validation, "evaluation.validation")
