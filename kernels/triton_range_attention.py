"""Triton kernels (forward and backward) for unpooling, lst_kernels.reference.range_cross_attention, and their
launchers: each token attends to the k slots of the segments in its range [first, last], up to `window` segments,
with an online softmax over blocks of candidates (O(T · w · k · d), never a [T, w · k, d] gather). Conventions as in
triton_segment_ops; the backward is atomic (fp32 atomics into dk, dv) or deterministic (per-token statistics, then
one program per segment summing its readers in order).
"""

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from lst_kernels.triton_segment_ops import BLOCK_TOKENS, online_softmax_step, slot_block


@triton.jit
def _range_block(q, k_ptr, v_ptr, first, last, tok_mask, w0, n_slots, n_heads, head, head_dim, window, scale,
                 BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """One block of candidates c = (w, j): slot j of segment last - w for w in [w0, w0 + BLOCK_C / BLOCK_K).
    Returns the scores [T, C] (-inf where invalid), the keys and values [T, C, D], their offsets and mask."""
    cand = tl.arange(0, BLOCK_C)
    dims = tl.arange(0, BLOCK_D)
    w = w0 + cand // BLOCK_K
    slot = cand % BLOCK_K
    seg = last[:, None] - w[None, :]
    valid = ((w < window) & (slot < n_slots))[None, :] & (seg >= first[:, None]) & (seg >= 0) & tok_mask[:, None]
    offsets = (((seg * n_slots + slot[None, :]) * n_heads + head) * head_dim)[:, :, None] + dims[None, None, :]
    mask = valid[:, :, None] & (dims < head_dim)[None, None, :]
    k = tl.load(k_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    scores = tl.where(valid, tl.sum(q[:, None, :] * k, axis=2) * scale, float("-inf"))
    return scores, k, v, offsets, mask


@triton.jit
def _range_tokens(q_ptr, first_ptr, last_ptr, n_tokens, n_heads, head_dim, window, BLOCK_T: tl.constexpr,
                  BLOCK_D: tl.constexpr):
    """This program's block of tokens (for one head): their ranges, queries [T, D] and the widest window among
    them (the window loop stops there, so its cost follows the ranges actually read)."""
    toks = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    head = tl.program_id(1)
    dims = tl.arange(0, BLOCK_D)
    tok_mask = toks < n_tokens
    first = tl.load(first_ptr + toks, mask=tok_mask, other=1)
    last = tl.load(last_ptr + toks, mask=tok_mask, other=0)
    q_offsets = (toks[:, None] * n_heads + head) * head_dim + dims[None, :]
    q_mask = tok_mask[:, None] & (dims < head_dim)[None, :]
    q = tl.load(q_ptr + q_offsets, mask=q_mask, other=0.0).to(tl.float32)
    span = tl.max(tl.where(tok_mask, tl.minimum(last - first + 1, window), 0), axis=0)
    return toks, head, tok_mask, first, last, q, q_offsets, q_mask, span


@triton.jit
def _range_attn_fwd(q_ptr, k_ptr, v_ptr, first_ptr, last_ptr, out_ptr, n_tokens, n_slots, n_heads, head_dim,
                    window, scale, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    """One program per (block of tokens, head): online softmax over the window, BLOCK_C / BLOCK_K segments at a
    time, so registers hold [T, C, D] for one block, never the whole window."""
    toks, head, tok_mask, first, last, q, q_offsets, q_mask, span = _range_tokens(
        q_ptr, first_ptr, last_ptr, n_tokens, n_heads, head_dim, window, BLOCK_T, BLOCK_D)
    m = tl.full([BLOCK_T], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_T], tl.float32)
    acc = tl.zeros([BLOCK_T, BLOCK_D], tl.float32)
    for w0 in range(0, span, BLOCK_C // BLOCK_K):
        scores, k, v, offsets, mask = _range_block(q, k_ptr, v_ptr, first, last, tok_mask, w0, n_slots, n_heads,
                                                   head, head_dim, window, scale, BLOCK_C, BLOCK_K, BLOCK_D)
        m, denom, alpha, p = online_softmax_step(m, denom, scores)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v, axis=1)
    out = acc / tl.where(denom > 0, denom, 1.0)[:, None]
    tl.store(out_ptr + q_offsets, out.to(out_ptr.dtype.element_ty), mask=q_mask)


@triton.jit
def _range_attn_bwd_q(q_ptr, k_ptr, v_ptr, do_ptr, first_ptr, last_ptr, dq_ptr, dk_ptr, dv_ptr, lse_ptr, delta_ptr,
                      n_tokens, n_slots, n_heads, head_dim, window, scale, ATOMIC: tl.constexpr,
                      BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 1 recomputes the softmax statistics and delta = sum_c p·(dO·v_c); pass 2 writes dq. ATOMIC: dk and dv
    are summed over the tokens that read a slot with fp32 atomics (order-dependent); else the statistics are stored
    for _range_attn_bwd_kv, which sums them in a fixed order."""
    toks, head, tok_mask, first, last, q, q_offsets, q_mask, span = _range_tokens(
        q_ptr, first_ptr, last_ptr, n_tokens, n_heads, head_dim, window, BLOCK_T, BLOCK_D)
    do = tl.load(do_ptr + q_offsets, mask=q_mask, other=0.0).to(tl.float32)
    m = tl.full([BLOCK_T], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_T], tl.float32)
    delta = tl.zeros([BLOCK_T], tl.float32)
    for w0 in range(0, span, BLOCK_C // BLOCK_K):
        scores, k, v, offsets, mask = _range_block(q, k_ptr, v_ptr, first, last, tok_mask, w0, n_slots, n_heads,
                                                   head, head_dim, window, scale, BLOCK_C, BLOCK_K, BLOCK_D)
        m, denom, alpha, p = online_softmax_step(m, denom, scores)
        delta = delta * alpha + tl.sum(p * tl.sum(do[:, None, :] * v, axis=2), axis=1)
    lse = tl.where(denom > 0, tl.where(m > float("-inf"), m, 0.0) + tl.log(tl.where(denom > 0, denom, 1.0)),
                   float("inf"))
    delta = delta / tl.where(denom > 0, denom, 1.0)
    dq = tl.zeros([BLOCK_T, BLOCK_D], tl.float32)
    for w0 in range(0, span, BLOCK_C // BLOCK_K):
        scores, k, v, offsets, mask = _range_block(q, k_ptr, v_ptr, first, last, tok_mask, w0, n_slots, n_heads,
                                                   head, head_dim, window, scale, BLOCK_C, BLOCK_K, BLOCK_D)
        p = tl.exp(scores - lse[:, None])
        ds = p * (tl.sum(do[:, None, :] * v, axis=2) - delta[:, None]) * scale
        dq += tl.sum(ds[:, :, None] * k, axis=1)
        if ATOMIC:
            tl.atomic_add(dk_ptr + offsets, ds[:, :, None] * q[:, None, :], mask=mask)
            tl.atomic_add(dv_ptr + offsets, p[:, :, None] * do[:, None, :], mask=mask)
    tl.store(dq_ptr + q_offsets, dq.to(dq_ptr.dtype.element_ty), mask=q_mask)
    if not ATOMIC:
        stats = toks * n_heads + head
        tl.store(lse_ptr + stats, lse, mask=tok_mask)
        tl.store(delta_ptr + stats, delta, mask=tok_mask)


@triton.jit
def _range_attn_bwd_kv(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, first_ptr, last_ptr, readers_ptr, dk_ptr,
                       dv_ptr, n_slots, n_heads, head_dim, window, scale, BLOCK_T: tl.constexpr,
                       BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """Deterministic dk, dv: one program per (segment, head) sums over the tokens that read the segment, in token
    order. Those tokens are one contiguous run [readers[2s], readers[2s+1]) because first and last never decrease
    (the layout's order)."""
    seg = tl.program_id(0)
    head = tl.program_id(1)
    dims, slot_offsets, slot_mask = slot_block(seg, head, n_slots, n_heads, head_dim, BLOCK_K, BLOCK_D)
    k = tl.load(k_ptr + slot_offsets, mask=slot_mask, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + slot_offsets, mask=slot_mask, other=0.0).to(tl.float32)
    start = tl.load(readers_ptr + 2 * seg)
    end = tl.load(readers_ptr + 2 * seg + 1)
    slots_ok = tl.arange(0, BLOCK_K) < n_slots
    dk = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    for t0 in range(start, end, BLOCK_T):
        toks = t0 + tl.arange(0, BLOCK_T)
        tok_mask = toks < end
        first = tl.load(first_ptr + toks, mask=tok_mask, other=1)
        last = tl.load(last_ptr + toks, mask=tok_mask, other=0)
        reads = tok_mask & (first <= seg) & (last >= seg) & (last - seg < window)
        offsets = (toks[:, None] * n_heads + head) * head_dim + dims[None, :]
        mask = reads[:, None] & (dims < head_dim)[None, :]
        q = tl.load(q_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        do = tl.load(do_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        lse = tl.load(lse_ptr + toks * n_heads + head, mask=reads, other=float("inf"))
        delta = tl.load(delta_ptr + toks * n_heads + head, mask=reads, other=0.0)
        scores = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # [T, K]
        p = tl.where(reads[:, None] & slots_ok[None, :], tl.exp(scores - lse[:, None]), 0.0)
        ds = p * (tl.sum(do[:, None, :] * v[None, :, :], axis=2) - delta[:, None]) * scale
        dk += tl.sum(ds[:, :, None] * q[:, None, :], axis=0)
        dv += tl.sum(p[:, :, None] * do[:, None, :], axis=0)
    tl.store(dk_ptr + slot_offsets, dk.to(dk_ptr.dtype.element_ty), mask=slot_mask)
    tl.store(dv_ptr + slot_offsets, dv.to(dv_ptr.dtype.element_ty), mask=slot_mask)


CANDIDATES = 16  # slots per block of the range attention's window loop (segments per block = this / k)


def _range_args(q: Tensor, key: Tensor, window: int) -> tuple[tuple[int, int], dict]:
    n_tokens, n_heads, head_dim = q.shape
    n_slots = key.shape[1]
    block_k = triton.next_power_of_2(n_slots)
    segments = min(triton.next_power_of_2(window), max(1, CANDIDATES // block_k))
    grid = (triton.cdiv(n_tokens, BLOCK_TOKENS), n_heads)
    return grid, dict(n_tokens=n_tokens, n_slots=n_slots, n_heads=n_heads, head_dim=head_dim, window=window,
                      scale=1.0 / math.sqrt(head_dim), BLOCK_T=BLOCK_TOKENS, BLOCK_C=segments * block_k,
                      BLOCK_K=block_k, BLOCK_D=triton.next_power_of_2(head_dim))


def range_cross_attention_fwd(q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor,
                              window: int) -> Tensor:
    out = torch.empty_like(q)
    grid, args = _range_args(q, key, window)
    _range_attn_fwd[grid](q, key, value, first, last, out, **args)
    return out


def range_cross_attention_bwd(grad: Tensor, q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor,
                              window: int, deterministic: bool) -> tuple[Tensor, Tensor, Tensor]:
    """deterministic: no atomics (bitwise reproducible), for first and last that never decrease (checked on the
    device, without a host sync); else dk, dv summed with fp32 atomics in whatever order the tokens run."""
    dq = torch.empty_like(q)
    grid, args = _range_args(q, key, window)
    if not deterministic:
        dk = torch.zeros(key.shape, dtype=torch.float32, device=key.device)
        dv = torch.zeros(value.shape, dtype=torch.float32, device=value.device)
        _range_attn_bwd_q[grid](q, key, value, grad, first, last, dq, dk, dv, dq, dq, ATOMIC=True, **args)
        return dq, dk.to(key.dtype), dv.to(value.dtype)
    torch._assert_async((first[1:] >= first[:-1]).all() & (last[1:] >= last[:-1]).all(),
                        "deterministic range_cross_attention needs nondecreasing first and last")
    lse = torch.empty(q.shape[:2], dtype=torch.float32, device=q.device)
    delta = torch.empty_like(lse)
    _range_attn_bwd_q[grid](q, key, value, grad, first, last, dq, dq, dq, lse, delta, ATOMIC=False, **args)
    # The tokens reading segment s: from the first whose last >= s to before the first whose first > s.
    segments = torch.arange(key.shape[0], device=key.device, dtype=last.dtype)
    readers = torch.stack([torch.searchsorted(last, segments), torch.searchsorted(first, segments, right=True)], 1)
    dk, dv = torch.empty_like(key), torch.empty_like(value)
    del args["n_tokens"], args["BLOCK_C"]
    _range_attn_bwd_kv[(key.shape[0], q.shape[1])](q, key, value, grad, lse, delta, first, last, readers, dk, dv,
                                                    **args)
    return dq, dk, dv
