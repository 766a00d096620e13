"""The public patch ops: the reference's plain autograd on the reference path, the custom ops (Triton kernels)
otherwise; `backend` names the backend of this call (None: the process default, see lst_kernels.ops). Keeping
the reference outside a custom-op boundary lets any TorchDispatchMode (FlopCounterMode,
fake tensors) see ordinary torch ops on CPU."""

import torch
from torch import Tensor

from lst_kernels import ops, reference


def _check_shapes(op: str, condition: bool, expected: str, *tensors: Tensor) -> None:
    """Shapes only (no host sync): a Triton kernel given a mis-shaped tensor would read the wrong memory silently."""
    if not condition:
        raise ValueError(f"{op}: expected {expected}, got shapes {', '.join(str(tuple(t.shape)) for t in tensors)}")


def segment_pool(x: Tensor, seg_lengths: Tensor, mode: str = "max", backend: str | None = None) -> Tensor:
    """Max or mean of the rows of `x` [N, d] over each segment -> [S, d]; empty segments give zeros."""
    _check_shapes("segment_pool", x.dim() == 2 and seg_lengths.dim() == 1, "x [N, d], seg_lengths [S]", x,
                  seg_lengths)
    resolved = ops.resolve_backend(x, backend)
    if resolved == "reference":
        return reference.segment_pool(x, seg_lengths, mode)
    return ops.segment_pool(x, seg_lengths, mode, resolved)


def segment_cross_attention(q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor,
                            backend: str | None = None) -> Tensor:
    """Slots q [S, k, H, dh] attend to their own segment's tokens (key, value [N, H, dh]) -> [S, k, H, dh]."""
    _check_shapes("segment_cross_attention", q.dim() == 4 and key.dim() == 3 and key.shape == value.shape
                  and key.shape[1:] == q.shape[2:] and seg_lengths.shape == q.shape[:1],
                  "q [S, k, H, dh], key and value [N, H, dh], seg_lengths [S]", q, key, value, seg_lengths)
    resolved = ops.resolve_backend(q, backend)
    if resolved == "reference":
        return reference.segment_cross_attention(q, key, value, seg_lengths)
    return ops.segment_cross_attention(q, key, value, seg_lengths, resolved)


def range_cross_attention(q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor,
                          window: int, backend: str | None = None, deterministic: bool | None = None) -> Tensor:
    """Tokens q [N, H, dh] attend to the slots of segments first[n]..last[n] (key, value [S, k, H, dh]).
    deterministic: a bitwise-reproducible backward, without atomics, for first and last that never decrease (the
    layout's order); None follows torch.use_deterministic_algorithms."""
    _check_shapes("range_cross_attention", q.dim() == 3 and key.dim() == 4 and key.shape == value.shape
                  and key.shape[2:] == q.shape[1:] and first.shape == last.shape == q.shape[:1],
                  "q [N, H, dh], key and value [S, k, H, dh], first and last [N]", q, key, value, first, last)
    resolved = ops.resolve_backend(q, backend)
    if resolved == "reference":
        return reference.range_cross_attention(q, key, value, first, last, window)
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    return ops.range_cross_attention(q, key, value, first, last, window, resolved, deterministic)
