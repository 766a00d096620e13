"""The public patch ops: the reference's plain autograd on the reference path, the custom ops (Triton kernels)
otherwise. Keeping the reference outside a custom-op boundary lets any TorchDispatchMode (FlopCounterMode,
fake tensors) see ordinary torch ops on CPU."""

from torch import Tensor

from lst_kernels import ops, reference


def segment_pool(x: Tensor, seg_lengths: Tensor, mode: str = "max") -> Tensor:
    """Max or mean of the rows of `x` [N, d] over each segment -> [S, d]; empty segments give zeros."""
    if ops.resolve_backend(x) == "reference":
        return reference.segment_pool(x, seg_lengths, mode)
    return ops.segment_pool(x, seg_lengths, mode)


def segment_cross_attention(q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor) -> Tensor:
    """Slots q [S, k, H, dh] attend to their own segment's tokens (key, value [N, H, dh]) -> [S, k, H, dh]."""
    if ops.resolve_backend(q) == "reference":
        return reference.segment_cross_attention(q, key, value, seg_lengths)
    return ops.segment_cross_attention(q, key, value, seg_lengths)


def range_cross_attention(q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor,
                          window: int) -> Tensor:
    """Tokens q [N, H, dh] attend to the slots of segments first[n]..last[n] (key, value [S, k, H, dh])."""
    if ops.resolve_backend(q) == "reference":
        return reference.range_cross_attention(q, key, value, first, last, window)
    return ops.range_cross_attention(q, key, value, first, last, window)
