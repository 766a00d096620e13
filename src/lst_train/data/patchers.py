"""Patchers for speech spans: static, aligned (one patch per word), mixed, curriculum and entropy.

Patch lengths are counted in frames and turned into tokens (× codebooks), so a patch always holds whole frames.
Every patch carries a kind, for the statistics users compare strategies by, and whether it closed early: a static
or entropy patch cut short by the end of its span (or row). Such a patch exists only because of the token after
it, so the decoder at its last token must not read it (see lst_train.model.layout). Aligned patches take their ends
from the forced alignment of the whole utterance: informed by future audio by construction, as in the paper. An
entropy patch ends after a frame whose first-codebook code the entropy table finds followed unpredictably, or at
max_len frames: decided by its own frames, as a full static patch is.
"""

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from lst_train.config import PatchingConfig, PatchStrategy
from lst_train.data.entropy_table import EntropyTable
from lst_train.patching import static_patch_lengths

KIND_SINGLE = 0   # a text token or special: always a 1-token patch
KIND_STATIC = 1   # a static speech patch
KIND_WORD = 2     # an aligned patch over (part of) one word
KIND_SILENCE = 3  # an aligned patch over the frames between words
KIND_ENTROPY = 4  # an entropy patch
KIND_NAMES = {KIND_SINGLE: "single", KIND_STATIC: "static", KIND_WORD: "word", KIND_SILENCE: "silence",
              KIND_ENTROPY: "entropy"}
SPEECH_KINDS = {kind: name for kind, name in KIND_NAMES.items() if kind != KIND_SINGLE}
"""The kinds of speech patches, by name: the per-kind statistics every batch carries."""


def _split(length: int, kind: int, max_len: int) -> list[tuple[int, int]]:
    return [(n, kind) for n in static_patch_lengths(length, max_len)]


def aligned_patch_frames(n_frames: int, word_frames: list[tuple[int, int]], silence: str,
                         max_len: int) -> list[tuple[int, int]]:
    """(frames, kind) patches: one per word; the gaps between words are their own patches ('separate') or join
    the next word ('merged'); trailing frames after the last word form a silence patch; long ones are split."""
    patches: list[tuple[int, int]] = []
    pos = 0
    for start, end in word_frames:
        start, end = max(start, pos), min(max(end, start), n_frames)
        if end <= start:
            continue  # a word shorter than a frame: its frames belong to its neighbours
        if start > pos and silence == "separate":
            patches += _split(start - pos, KIND_SILENCE, max_len)
            pos = start
        patches += _split(end - pos, KIND_WORD, max_len)
        pos = end
    if pos < n_frames:
        patches += _split(n_frames - pos, KIND_SILENCE, max_len)
    return patches


@dataclass
class Patcher:
    """Cuts speech spans; decides aligned vs static per document from the training step."""

    cfg: PatchingConfig
    total_steps: int
    ends_patch: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    """Entropy: whether a frame with each first-codebook code ends its patch (the table's entropy above the
    threshold)."""

    def __post_init__(self):
        if self.cfg.strategy == PatchStrategy.entropy:
            table = EntropyTable.load(self.cfg.entropy_table)
            self.ends_patch = table.entropy > table.patch_threshold(self.cfg)

    def aligned_probability(self, step: int) -> float:
        """P(aligned) for a document packed at `step`."""
        strategy = self.cfg.strategy
        if strategy in ("static", "aligned", "entropy"):
            return float(strategy == "aligned")
        if strategy == "mixed":
            return self.cfg.mixed_prob
        progress = step / self.total_steps
        tau1, tau2 = self.cfg.curriculum_start, self.cfg.curriculum_end
        if progress <= tau1:
            return 1.0
        if progress >= tau2:
            return 0.0
        return (tau2 - progress) / (tau2 - tau1)

    def patch_frames(self, n_frames: int, word_frames: list[tuple[int, int]], aligned: bool,
                     first_codes: Sequence[int] = ()) -> list[tuple[int, int]]:
        """(frames, kind) patches of one speech span; entropy patching reads each frame's first-codebook code."""
        if aligned and word_frames:
            return aligned_patch_frames(n_frames, word_frames, self.cfg.silence, self.cfg.max_len)
        if self.ends_patch is None:
            return [(n, KIND_STATIC) for n in static_patch_lengths(n_frames, self.cfg.size)]
        patches, length = [], 0
        for frame in range(n_frames):
            length += 1
            if self._entropy_patch_ends(length, first_codes[frame] if frame < len(first_codes) else None):
                patches.append((length, KIND_ENTROPY))
                length = 0
        if length:
            patches.append((length, KIND_ENTROPY))
        return patches

    def _entropy_patch_ends(self, frames: int, last_code: int | None) -> bool:
        """Whether an entropy patch of `frames` frames ends after its last one, whose code is `last_code` (None: a
        frame not yet complete)."""
        if last_code is None:
            return False
        return frames >= self.cfg.max_len or bool(self.ends_patch[last_code])

    def closed_early(self, kind: int, n_tokens: int, tokens_per_frame: int, last_code: int | None = None) -> bool:
        """Whether a speech patch's end was decided by the token after it: a static patch shorter than `size`
        frames, or an entropy patch whose last frame (first-codebook code `last_code`, None if that frame is
        incomplete) neither ends a patch nor reaches max_len (the end of its span cut it short). A full static
        patch ends by itself; aligned ends come from the alignment."""
        if kind == KIND_ENTROPY:
            whole = n_tokens % tokens_per_frame == 0
            return not self._entropy_patch_ends(n_tokens // tokens_per_frame, last_code if whole else None)
        return kind == KIND_STATIC and n_tokens < self.cfg.size * tokens_per_frame

