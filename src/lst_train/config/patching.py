"""The `patching` section: how the LST's patcher cuts speech spans."""

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from lst_train.config.errors import check


class PatchStrategy(StrEnum):
    static = "static"
    aligned = "aligned"
    mixed = "mixed"
    curriculum = "curriculum"


class Silence(StrEnum):
    separate = "separate"
    merged = "merged"


def evaluation_patching(patching: "PatchingConfig") -> "PatchingConfig":
    """What a model is scored with (items, held-out loss, validation): aligned for an aligned model, static for
    every other (a curriculum ends static; mixed models are scored on their causal mode)."""
    strategy = PatchStrategy.aligned if patching.strategy == PatchStrategy.aligned else PatchStrategy.static
    return dataclasses.replace(patching, strategy=strategy)


@dataclass
class PatchingConfig:
    strategy: PatchStrategy = PatchStrategy.static
    """How speech spans are cut: 'static' (runs of `size` frames), 'aligned' (one patch per word), 'mixed'
    (aligned with probability `mixed_prob` per document, else static), 'curriculum' (aligned with a probability
    falling from 1 to 0 between `curriculum_start` and `curriculum_end`)."""
    size: int = 4
    """Frames per static patch (p); at 12.5 Hz Mimi, p=2 is 160 ms."""
    silence: Silence = Silence.separate
    """Aligned: the frames between words form their own patches ('separate') or join the next word ('merged')."""
    max_len: int = 16
    """Aligned: longer words or silences are split into patches of at most this many frames."""
    mixed_prob: float = 0.5
    """Mixed: probability q that a document is patched aligned."""
    curriculum_start: float = 1 / 3
    """Curriculum: fraction of training.steps until which every document is aligned (tau1)."""
    curriculum_end: float = 2 / 3
    """Curriculum: fraction of training.steps from which every document is static (tau2)."""


def validate_patching(p: PatchingConfig) -> None:
    """Start-up checks of the patching section."""
    check(p.size >= 1, "patching.size", f"must be >= 1, got {p.size}")
    check(p.max_len >= 1, "patching.max_len", f"must be >= 1, got {p.max_len}")
    check(0.0 <= p.mixed_prob <= 1.0, "patching.mixed_prob", f"must be in [0, 1], got {p.mixed_prob}")
    check(0.0 <= p.curriculum_start <= p.curriculum_end <= 1.0, "patching.curriculum_start",
          f"need 0 <= curriculum_start <= curriculum_end <= 1, got {p.curriculum_start}, {p.curriculum_end}")
