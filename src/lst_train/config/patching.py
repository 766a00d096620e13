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
    entropy = "entropy"


class Silence(StrEnum):
    separate = "separate"
    merged = "merged"


def evaluation_patching(patching: "PatchingConfig") -> "PatchingConfig":
    """What a model is scored with (items, held-out loss, validation): aligned for an aligned model, entropy for an
    entropy model, static for every other (a curriculum ends static; mixed models are scored on their causal mode)."""
    kept = (PatchStrategy.aligned, PatchStrategy.entropy)
    strategy = patching.strategy if patching.strategy in kept else PatchStrategy.static
    return dataclasses.replace(patching, strategy=strategy)


def generation_patching(patching: "PatchingConfig") -> "PatchingConfig":
    """What a model samples with: entropy for an entropy model, else static (word ends are not known while
    sampling, so an aligned model generates on static patches of `size` frames)."""
    entropy = patching.strategy == PatchStrategy.entropy
    return dataclasses.replace(patching, strategy=PatchStrategy.entropy if entropy else PatchStrategy.static)


@dataclass
class PatchingConfig:
    strategy: PatchStrategy = PatchStrategy.static
    """How speech spans are cut: 'static' (runs of `size` frames), 'aligned' (one patch per word), 'mixed'
    (aligned with probability `mixed_prob` per document, else static), 'curriculum' (aligned with a probability
    falling from 1 to 0 between `curriculum_start` and `curriculum_end`), 'entropy' (a patch ends after a frame
    whose next frame a speech-code LM finds hard to predict: `entropy_table`)."""
    size: int = 4
    """Frames per static patch (p); at 12.5 Hz Mimi, p=2 is 160 ms."""
    silence: Silence = Silence.separate
    """Aligned: the frames between words form their own patches ('separate') or join the next word ('merged')."""
    max_len: int = 16
    """Aligned and entropy: longer words, silences or low-entropy runs are split into patches of at most this many
    frames."""
    mixed_prob: float = 0.5
    """Mixed: probability q that a document is patched aligned."""
    curriculum_start: float = 1 / 3
    """Curriculum: fraction of training.steps until which every document is aligned (tau1)."""
    curriculum_end: float = 2 / 3
    """Curriculum: fraction of training.steps from which every document is static (tau2)."""
    entropy_table: str = ""
    """Entropy: the speech-code bigram LM written by `lst-train data fit-entropy` (fitted through this run's codec)."""
    entropy_threshold: float = 0.0
    """Entropy: a patch ends after a frame whose next-code entropy (nats) exceeds this; 0 = the threshold at which
    patches average `size` frames on the fitted corpus (before `max_len` splits and span ends), so that an entropy
    model and a static one of the same size see about as many patches."""


def validate_patching(p: PatchingConfig) -> None:
    """Start-up checks of the patching section."""
    check(p.size >= 1, "patching.size", f"must be >= 1, got {p.size}")
    check(p.max_len >= 1, "patching.max_len", f"must be >= 1, got {p.max_len}")
    check(0.0 <= p.mixed_prob <= 1.0, "patching.mixed_prob", f"must be in [0, 1], got {p.mixed_prob}")
    check(0.0 <= p.curriculum_start <= p.curriculum_end <= 1.0, "patching.curriculum_start",
          f"need 0 <= curriculum_start <= curriculum_end <= 1, got {p.curriculum_start}, {p.curriculum_end}")
    check(p.strategy != PatchStrategy.entropy or p.entropy_table != "", "patching.entropy_table",
          "patching.strategy=entropy needs the speech-code LM: make one with `lst-train data fit-entropy RECIPE --out "
          "FILE`")
    check(p.entropy_threshold >= 0.0, "patching.entropy_threshold",
          f"must be >= 0 (0 = patches of `size` frames on average), got {p.entropy_threshold}")
