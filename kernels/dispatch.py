"""The public patch ops: the reference's plain autograd on the reference path, the custom ops (Triton kernels)
otherwise; `backend` names the backend of this call (None: the process default, see lst_kernels.ops). Keeping
the reference outside a custom-op boundary lets any TorchDispatchMode (FlopCounterMode,
fake tensors) see ordinary torch ops on CPU."""

import torch
from torch import Tensor

from lst_kernels import ops, reference


def segment_pool(x: Tensor, seg_lengths: Tensor, mode: str = "max", backend: str | None = None) -> Tensor:
    """Max or mean of the rows of `x` [N, d] over each segment -> [S, d]; empty segments give zeros."""
    resolved = ops.resolve_backend(x, backend)
    if resolved == "reference":
        return reference.segment_pool(x, seg_lengths, mode)
    return ops.segment_pool(x, seg_lengths, mode, resolved)


def segment_cross_attention(q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor,
                            backend: str | None = None) -> Tensor:
    """Slots q [S, k, H, dh] attend to their own segment's tokens (key, value [N, H, dh]) -> [S, k, H, dh]."""
    resolved = ops.resolve_backend(q, backend)
    if resolved == "reference":
        return reference.segment_cross_attention(q, key, value, seg_lengths)
    return ops.segment_cross_attention(q, key, value, seg_lengths, resolved)


def range_cross_attention(q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor,
                          window: int, backend: str | None = None, deterministic: bool | None = None) -> Tensor:
    """Tokens q [N, H, dh] attend to the slots of segments first[n]..last[n] (key, value [S, k, H, dh]).
    deterministic: a bitwise-reproducible backward, without atomics, for first and last that never decrease (the
    layout's order); None follows torch.use_deterministic_algorithms."""
    resolved = ops.resolve_backend(q, backend)
    if resolved == "reference":
        return reference.range_cross_attention(q, key, value, first, last, window)
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    return ops.range_cross_attention(q, key, value, first, last, window, resolved, deterministic)
