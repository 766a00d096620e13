"""Patch partitions of token rows: which contiguous runs of tokens the LST's global transformer sees as one unit.

Text tokens and specials are always 1-token patches; runs of speech tokens are cut by a patcher
(lst_train.data.patchers; lst_train.data.pieces.row_partition for a token row). A row begins with <bos>, so its
first patch is a 1-token patch and no patch sees a token it must predict.
"""

from typing import Sequence

import torch
from torch import Tensor


def static_patch_lengths(n_tokens: int, patch_size: int) -> list[int]:
    """Cut a speech span of `n_tokens` into fixed runs of `patch_size` (the last one may be shorter)."""
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    full, rest = divmod(n_tokens, patch_size)
    return [patch_size] * full + ([rest] if rest else [])


def pad_patch_lengths(rows: Sequence[Sequence[int]]) -> Tensor:
    """Stack per-row patch lengths into int64 [B, P], right-padded with 0."""
    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [0] * (width - len(row)) for row in rows], dtype=torch.long)


def pad_closed_early(rows: Sequence[Sequence[bool]]) -> Tensor:
    """Stack per-row closed-early flags into bool [B, P], right-padded with False (padding patches)."""
    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [False] * (width - len(row)) for row in rows], dtype=torch.bool)


def check_patch_lengths(patch_lengths: Tensor, n_tokens: int) -> None:
    """Raise ValueError unless every row is positive lengths, then only zeros, summing to `n_tokens`."""
    if patch_lengths.dim() != 2:
        raise ValueError(f"patch_lengths must be [B, P], got shape {tuple(patch_lengths.shape)}")
    if (patch_lengths < 0).any():
        raise ValueError("patch_lengths has negative entries")
    sums = patch_lengths.sum(dim=1)
    if (sums != n_tokens).any():
        raise ValueError(f"each row of patch_lengths must sum to T={n_tokens}, got {sums.tolist()}")
    nonzero = (patch_lengths > 0).long()
    if (nonzero[:, 1:] > nonzero[:, :-1]).any():
        raise ValueError("patch_lengths may hold zeros only as right padding")
