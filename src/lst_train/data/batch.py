"""A packed batch: what the loader yields and the model, the loss and the statistics read."""

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

TENSORS = ("tokens", "labels", "modality", "patch_lengths", "closed_early")


@dataclass
class Batch:
    tokens: Tensor
    """[B, T] token ids, right-padded with <pad>."""
    labels: Tensor
    """[B, T] next-token targets (IGNORE_INDEX on padding, after <eos> and at the last position)."""
    modality: Tensor
    """[B, T] MODALITY_SPEECH or MODALITY_TEXT per token."""
    patch_lengths: Tensor
    """[B, P] patch lengths (rows sum to T, right-padded with 0)."""
    closed_early: Tensor
    """[B, P] patches whose end the next token decided (their last token reads the patch before)."""
    row_stats: dict[str, Tensor] = field(default_factory=dict)
    """Per-row statistics [B] (speech seconds, tokens, patches by kind, capped rows; source_tokens [B, sources])."""
    loader: dict = field(default_factory=dict)
    """The reader that made it: reader, step, cumulative skip counts, documents per source, epochs."""
    flops: float = 0.0
    """Exact training FLOPs (forward + backward) of the batch, counted by the loader."""
    keys: list[list[str]] = field(default_factory=list)
    """Per row, where its documents came from (`shard:KEY` / `shard:LINE`)."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """The tensors the step reads, on `device` (statistics stay on the host)."""
        return replace(self, **{name: getattr(self, name).to(device, non_blocking=non_blocking) for name in TENSORS})

    def pin_memory(self) -> "Batch":
        """Page-locked copies of the tensors (called by the DataLoader with pin_memory=True)."""
        return replace(self, **{name: getattr(self, name).pin_memory() for name in TENSORS})
