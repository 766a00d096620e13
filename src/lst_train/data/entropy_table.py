"""The entropy patcher's speech LM: a bigram model of each frame's first-codebook code, fitted on a corpus's speech
(`lst-train data fit-entropy`), kept as the entropy of the next frame's code after each code.

As BLT cuts bytes where a small LM is unsure of the next one, a patch ends after a frame whose successor is hard to
predict. The decision after frame f reads frame f's code only, so it is causal, and costs a table lookup (no
multiply-adds: the FLOP count of an entropy LST is its model's alone). A safetensors file holds the table, each
code's frame count on the fitted corpus (to turn a mean patch length into a threshold) and the codec it was fitted
through: codes from another codec would read someone else's entropies.
"""

import json
import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lst_train.config import ConfigError, PatchingConfig

_ENTROPY, _FRAMES = "next_code_entropy", "code_frames"
_FIT = "make one with `lst-train data fit-entropy RECIPE --out FILE` on this run's recipe"


@dataclass
class EntropyTable:
    entropy: np.ndarray
    """float64 [codebook size]: entropy (nats) of the next frame's code after each code."""
    frames: np.ndarray
    """int64 [codebook size]: frames with each code in the fitted corpus."""
    codec: str
    """The codec key (lst_train.data.token_cache.codec_key) of the codes it was fitted on."""
    smoothing: float = 0.0
    """Add-k smoothing of the bigram counts it was fitted with."""

    @classmethod
    def fit(cls, sequences: Iterable[np.ndarray], codebook_size: int, codec: str,
            smoothing: float = 0.1) -> "EntropyTable":
        """Bigram counts over `sequences` (each one span's first-codebook codes, in frame order), add-`smoothing`
        smoothed: a code never followed by another gets the uniform distribution's entropy, log(codebook size)."""
        counts = np.zeros((codebook_size, codebook_size), dtype=np.int64)
        frames = np.zeros(codebook_size, dtype=np.int64)
        for codes in sequences:
            codes = np.asarray(codes, dtype=np.int64)
            np.add.at(frames, codes, 1)
            np.add.at(counts, (codes[:-1], codes[1:]), 1)
        smoothed = counts + smoothing
        totals = smoothed.sum(axis=1, keepdims=True)
        probs = np.divide(smoothed, totals, out=np.full(smoothed.shape, 1.0 / codebook_size), where=totals > 0)
        logs = np.log(probs, out=np.zeros_like(probs), where=probs > 0)
        return cls(entropy=-(probs * logs).sum(axis=1), frames=frames, codec=codec, smoothing=smoothing)

    def threshold(self, mean_frames: float) -> float:
        """The threshold at which the share of the fitted frames that end a patch (entropy above it) is nearest
        1 / `mean_frames`: patches then average about `mean_frames` frames, before max_len splits and span ends."""
        order = np.argsort(-self.entropy, kind="stable")
        # ending[k]: the share of frames whose code is among the k of highest entropy
        ending = np.concatenate([[0.0], np.cumsum(self.frames[order]) / max(int(self.frames.sum()), 1)])
        # only cut between codes of different entropy: a threshold cannot split a tie
        cuts = [k for k in range(len(order) + 1)
                if k in (0, len(order)) or self.entropy[order[k - 1]] > self.entropy[order[k]]]
        k = min(cuts, key=lambda cut: abs(ending[cut] - 1.0 / mean_frames))
        return -1.0 if k == len(order) else float(self.entropy[order[k]])  # -1: every frame ends a patch

    def patch_threshold(self, patching: PatchingConfig) -> float:
        """patching.entropy_threshold, or where it is 0, the threshold for patches of patching.size frames."""
        return patching.entropy_threshold or self.threshold(patching.size)

    def save(self, path: str) -> None:
        save_file({_ENTROPY: torch.from_numpy(self.entropy), _FRAMES: torch.from_numpy(self.frames)}, path,
                  metadata={"codec": self.codec, "smoothing": json.dumps(self.smoothing)})

    @classmethod
    def load(cls, path: str) -> "EntropyTable":
        if not os.path.isfile(path):
            raise ConfigError(f"patching.entropy_table: no file {path!r}; {_FIT}")
        with safe_open(path, "pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        if _ENTROPY not in tensors or _FRAMES not in tensors or "codec" not in metadata:
            raise ValueError(f"{path}: not an entropy table")
        return cls(entropy=tensors[_ENTROPY].double().numpy(), frames=tensors[_FRAMES].long().numpy(),
                   codec=metadata["codec"], smoothing=json.loads(metadata.get("smoothing", "0")))


def check_entropy_table(path: str, codec: str, codebook_size: int) -> None:
    """Start-up check of patching.entropy_table: a table fitted through this run's codec (key `codec`)."""
    try:
        table = EntropyTable.load(path)
    except ConfigError:
        raise
    except Exception as err:  # a truncated or foreign file: say which and how to remake it
        raise ConfigError(f"patching.entropy_table: {path!r} does not load ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:120] if str(err) else ''}); {_FIT}") from None
    if table.codec != codec or len(table.entropy) != codebook_size:
        raise ConfigError(f"patching.entropy_table: {path!r} was fitted through another codec or vocabulary (codec "
                          f"{table.codec}, {len(table.entropy)} codes; this run: {codec}, {codebook_size}); {_FIT}")
