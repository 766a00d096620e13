"""Pure-torch reference ops for patch pooling and unpooling.

Everything works on a flat layout: N tokens (a batch flattened row after row) and S segments (patches, including
zero-length padding patches) that partition the tokens in order, given by `seg_lengths` (sum == N). No op builds a
dense [S, N] mask: memory is O(N·k·d + S·k·d). Softmaxes run in fp32 (or float64) whatever the input dtype; outputs have the
input dtype. A segment (or token) with nothing to attend to gets an all-zero output.
"""

import math

import torch
from torch import Tensor


def _upcast(x: Tensor) -> Tensor:
    """At least fp32 for reductions and softmax (float64 stays float64, for gradcheck)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def segment_ids(seg_lengths: Tensor, n_tokens: int) -> Tensor:
    """Index of the segment that holds each token: int64 [N]."""
    return torch.repeat_interleave(
        torch.arange(seg_lengths.numel(), device=seg_lengths.device), seg_lengths, output_size=n_tokens
    )


def segment_pool(x: Tensor, seg_lengths: Tensor, mode: str = "max") -> Tensor:
    """Max or mean of the rows of `x` [N, d] over each segment -> [S, d]; empty segments give zeros.

    The max's gradient is split evenly between tied maxima (scatter_reduce's rule, as the Triton kernel does).
    """
    if mode not in ("max", "mean"):
        raise ValueError(f"segment_pool mode must be 'max' or 'mean', got {mode!r}")
    xf = _upcast(x)
    if mode == "max":
        # -inf, not 0, as the unused initial value: scatter_reduce's backward would count an equal one as a tie.
        index = segment_ids(seg_lengths, x.shape[0])[:, None].expand_as(xf)
        pooled = xf.new_full((seg_lengths.numel(), x.shape[1]), float("-inf")).scatter_reduce(
            0, index, xf, "amax", include_self=False)
    else:
        pooled = torch.segment_reduce(xf, "mean", lengths=seg_lengths, axis=0, unsafe=True)
    return torch.where((seg_lengths > 0)[:, None], pooled, 0.0).to(x.dtype)


def segment_cross_attention(q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor) -> Tensor:
    """The k query slots of each segment attend to the tokens of their own segment only.

    q: [S, k, H, dh] (slots of each segment); key, value: [N, H, dh] (tokens); returns [S, k, H, dh].
    """
    seg = segment_ids(seg_lengths, key.shape[0])
    scale = 1.0 / math.sqrt(q.shape[-1])
    qf, kf, vf = _upcast(q), _upcast(key), _upcast(value)
    scores = torch.einsum("nshd,nhd->nsh", qf[seg], kf) * scale  # [N, k, H]
    seg_max = torch.segment_reduce(scores.detach(), "max", lengths=seg_lengths, axis=0, unsafe=True)
    weights = torch.exp(scores - seg_max[seg])
    denom = torch.segment_reduce(weights, "sum", lengths=seg_lengths, axis=0, unsafe=True)
    weights = weights / denom[seg]
    out = torch.segment_reduce(weights[..., None] * vf[:, None], "sum", lengths=seg_lengths, axis=0, unsafe=True)
    return out.to(q.dtype)


def range_cross_attention(q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor, window: int) -> Tensor:
    """Each token attends to the k slots of the segments first[n]..last[n] (inclusive, at most `window` of them).

    q: [N, H, dh] (tokens); key, value: [S, k, H, dh] (slots of each segment); first, last: int64 [N], global
    segment indices (first > last means nothing to attend: zero output); returns [N, H, dh].
    """
    n_tokens, n_heads, head_dim = q.shape
    n_slots = key.shape[1]
    offsets = torch.arange(window, device=q.device)
    idx = last[:, None] - offsets  # [N, w], newest segment first
    valid = idx >= first[:, None]
    idx = idx.clamp(min=0)
    k_g = _upcast(key)[idx].reshape(n_tokens, window * n_slots, n_heads, head_dim)
    v_g = _upcast(value)[idx].reshape(n_tokens, window * n_slots, n_heads, head_dim)
    valid = valid[:, :, None].expand(n_tokens, window, n_slots).reshape(n_tokens, window * n_slots, 1)
    scores = torch.einsum("nhd,nchd->nch", _upcast(q), k_g) / math.sqrt(head_dim)
    scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
    # A token with no valid slot gets a uniform softmax over masked slots; multiplying by `valid` zeroes it.
    probs = torch.softmax(scores, dim=1) * valid
    return torch.einsum("nch,nchd->nhd", probs, v_g).to(q.dtype)
