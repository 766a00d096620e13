"""Triton kernels (forward and backward) for the three patch ops of lst_kernels.reference, and their launchers.

Same flat layout as the reference: N tokens, S segments given by `seg_lengths` (contiguous, in order, sum == N).
Every kernel loads its inputs in their own dtype, computes in fp32 and stores in the output's dtype. Per-row dot
products are elementwise multiplies + tl.sum (no tl.dot: the rows are tiny, and the interpreter's bf16 tl.dot is
wrong). Backward kernels recompute the softmax instead of saving statistics, so the ops save only their inputs.
Launchers take contiguous tensors on one device (CUDA, or CPU under TRITON_INTERPRET=1) and never sync the host.
"""

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK_TOKENS = 16  # tokens per loop step (segment ops) or per program (range attention)


@triton.jit
def _pool_fwd(x_ptr, starts_ptr, lengths_ptr, out_ptr, dim, IS_MAX: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_D: tl.constexpr):
    seg = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_mask = cols < dim
    start = tl.load(starts_ptr + seg)
    length = tl.load(lengths_ptr + seg)
    if IS_MAX:
        acc = tl.full([BLOCK_D], float("-inf"), tl.float32)
    else:
        acc = tl.zeros([BLOCK_D], tl.float32)
    for i in range(0, length, BLOCK_N):
        rows = i + tl.arange(0, BLOCK_N)
        mask = (rows < length)[:, None] & col_mask[None, :]
        ptrs = x_ptr + (start + rows)[:, None] * dim + cols[None, :]
        if IS_MAX:
            acc = tl.maximum(acc, tl.max(tl.load(ptrs, mask=mask, other=float("-inf")).to(tl.float32), axis=0))
        else:
            acc += tl.sum(tl.load(ptrs, mask=mask, other=0.0).to(tl.float32), axis=0)
    if IS_MAX:
        acc = tl.where(length > 0, acc, 0.0)
    else:
        acc = acc / tl.maximum(length, 1).to(tl.float32)
    tl.store(out_ptr + seg * dim + cols, acc.to(out_ptr.dtype.element_ty), mask=col_mask)


@triton.jit
def _pool_bwd(x_ptr, grad_ptr, starts_ptr, lengths_ptr, dx_ptr, dim, IS_MAX: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_D: tl.constexpr):
    """Mean: grad / length to every token. Max: grad split evenly among the tokens equal to the max (as torch)."""
    seg = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    col_mask = cols < dim
    start = tl.load(starts_ptr + seg)
    length = tl.load(lengths_ptr + seg)
    grad = tl.load(grad_ptr + seg * dim + cols, mask=col_mask, other=0.0).to(tl.float32)
    if IS_MAX:
        best = tl.full([BLOCK_D], float("-inf"), tl.float32)
        count = tl.zeros([BLOCK_D], tl.float32)
        for i in range(0, length, BLOCK_N):
            rows = i + tl.arange(0, BLOCK_N)
            mask = (rows < length)[:, None] & col_mask[None, :]
            x = tl.load(x_ptr + (start + rows)[:, None] * dim + cols[None, :], mask=mask, other=float("-inf"))
            x = x.to(tl.float32)
            new_best = tl.maximum(best, tl.max(x, axis=0))
            count = tl.where(new_best > best, 0.0, count) + tl.sum((x == new_best[None, :]).to(tl.float32), axis=0)
            best = new_best
        grad = grad / tl.maximum(count, 1.0)
    else:
        grad = grad / tl.maximum(length, 1).to(tl.float32)
    for i in range(0, length, BLOCK_N):
        rows = i + tl.arange(0, BLOCK_N)
        mask = (rows < length)[:, None] & col_mask[None, :]
        offsets = (start + rows)[:, None] * dim + cols[None, :]
        dx = tl.zeros([BLOCK_N, BLOCK_D], tl.float32) + grad[None, :]
        if IS_MAX:
            x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            dx = tl.where(x == best[None, :], dx, 0.0)
        tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _online_softmax_step(m, denom, scores):
    """One block [R, C] of an online softmax over C: the new running max and denominator, the factor that rescales
    what was summed under the old max, and the block's weights exp(scores - max). A row with no finite score yet
    keeps max -inf, weights 0 and denominator 0."""
    m_new = tl.maximum(m, tl.max(scores, axis=1))
    m_safe = tl.where(m_new > float("-inf"), m_new, 0.0)
    alpha = tl.exp(m - m_safe)
    p = tl.exp(scores - m_safe[:, None])
    return m_new, denom * alpha + tl.sum(p, axis=1), alpha, p


@triton.jit
def _segment_scores(q, k_ptr, v_ptr, offsets, mask, scale):
    """Scores [K, BLOCK_N] of the slots q [K, D] against one block of tokens, and the block's keys and values."""
    k = tl.load(k_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    scores = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale
    return scores, k, v


@triton.jit
def _slot_block(seg, head, n_slots, n_heads, head_dim, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """The head-dim range, and the offsets and mask of the k slots of one (segment, head) in [S, k, H, dh]."""
    slots = tl.arange(0, BLOCK_K)
    dims = tl.arange(0, BLOCK_D)
    offsets = ((seg * n_slots + slots)[:, None] * n_heads + head) * head_dim + dims[None, :]
    mask = (slots < n_slots)[:, None] & (dims < head_dim)[None, :]
    return dims, offsets, mask


@triton.jit
def _segment_attn_fwd(q_ptr, k_ptr, v_ptr, starts_ptr, lengths_ptr, out_ptr, n_slots, n_heads, head_dim, scale,
                      BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program per (segment, head): online softmax of its k slots over the segment's tokens."""
    seg = tl.program_id(0)
    head = tl.program_id(1)
    dims, slot_offsets, slot_mask = _slot_block(seg, head, n_slots, n_heads, head_dim, BLOCK_K, BLOCK_D)
    q = tl.load(q_ptr + slot_offsets, mask=slot_mask, other=0.0).to(tl.float32)
    start = tl.load(starts_ptr + seg)
    length = tl.load(lengths_ptr + seg)
    m = tl.full([BLOCK_K], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_K], tl.float32)
    acc = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    for i in range(0, length, BLOCK_N):
        toks = i + tl.arange(0, BLOCK_N)
        offsets = ((start + toks)[:, None] * n_heads + head) * head_dim + dims[None, :]
        mask = (toks < length)[:, None] & (dims < head_dim)[None, :]
        scores, k, v = _segment_scores(q, k_ptr, v_ptr, offsets, mask, scale)
        scores = tl.where((toks < length)[None, :], scores, float("-inf"))
        m, denom, alpha, p = _online_softmax_step(m, denom, scores)
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
    out = acc / tl.where(denom > 0, denom, 1.0)[:, None]
    tl.store(out_ptr + slot_offsets, out.to(out_ptr.dtype.element_ty), mask=slot_mask)


@triton.jit
def _segment_attn_bwd(q_ptr, k_ptr, v_ptr, do_ptr, starts_ptr, lengths_ptr, dq_ptr, dk_ptr, dv_ptr, n_slots,
                      n_heads, head_dim, scale, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_D: tl.constexpr):
    """Pass 1 recomputes the softmax statistics and delta = sum_n p·(dO·v_n); pass 2 writes the gradients. Each
    token belongs to one segment, so its dk/dv rows are written by one program only (no atomics)."""
    seg = tl.program_id(0)
    head = tl.program_id(1)
    dims, slot_offsets, slot_mask = _slot_block(seg, head, n_slots, n_heads, head_dim, BLOCK_K, BLOCK_D)
    q = tl.load(q_ptr + slot_offsets, mask=slot_mask, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + slot_offsets, mask=slot_mask, other=0.0).to(tl.float32)
    start = tl.load(starts_ptr + seg)
    length = tl.load(lengths_ptr + seg)
    m = tl.full([BLOCK_K], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_K], tl.float32)
    delta = tl.zeros([BLOCK_K], tl.float32)
    for i in range(0, length, BLOCK_N):
        toks = i + tl.arange(0, BLOCK_N)
        offsets = ((start + toks)[:, None] * n_heads + head) * head_dim + dims[None, :]
        mask = (toks < length)[:, None] & (dims < head_dim)[None, :]
        scores, k, v = _segment_scores(q, k_ptr, v_ptr, offsets, mask, scale)
        scores = tl.where((toks < length)[None, :], scores, float("-inf"))
        m, denom, alpha, p = _online_softmax_step(m, denom, scores)
        delta = delta * alpha + tl.sum(p * tl.sum(do[:, None, :] * v[None, :, :], axis=2), axis=1)
    denom = tl.where(denom > 0, denom, 1.0)
    delta = delta / denom
    dq = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    for i in range(0, length, BLOCK_N):
        toks = i + tl.arange(0, BLOCK_N)
        offsets = ((start + toks)[:, None] * n_heads + head) * head_dim + dims[None, :]
        mask = (toks < length)[:, None] & (dims < head_dim)[None, :]
        scores, k, v = _segment_scores(q, k_ptr, v_ptr, offsets, mask, scale)
        p = tl.exp(scores - m[:, None]) / denom[:, None]
        p = tl.where((toks < length)[None, :], p, 0.0)
        ds = p * (tl.sum(do[:, None, :] * v[None, :, :], axis=2) - delta[:, None]) * scale
        dq += tl.sum(ds[:, :, None] * k[None, :, :], axis=1)
        dk = tl.sum(ds[:, :, None] * q[:, None, :], axis=0)
        dv = tl.sum(p[:, :, None] * do[:, None, :], axis=0)
        tl.store(dk_ptr + offsets, dk.to(dk_ptr.dtype.element_ty), mask=mask)
        tl.store(dv_ptr + offsets, dv.to(dv_ptr.dtype.element_ty), mask=mask)
    tl.store(dq_ptr + slot_offsets, dq.to(dq_ptr.dtype.element_ty), mask=slot_mask)


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
        m, denom, alpha, p = _online_softmax_step(m, denom, scores)
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
        m, denom, alpha, p = _online_softmax_step(m, denom, scores)
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
    dims, slot_offsets, slot_mask = _slot_block(seg, head, n_slots, n_heads, head_dim, BLOCK_K, BLOCK_D)
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


def _starts(seg_lengths: Tensor) -> Tensor:
    return seg_lengths.cumsum(0) - seg_lengths


def _pool_grid(n_segments: int, dim: int) -> tuple[tuple[int, int], int]:
    block_d = min(triton.next_power_of_2(dim), 128)
    return (n_segments, triton.cdiv(dim, block_d)), block_d


def segment_pool_fwd(x: Tensor, seg_lengths: Tensor, mode: str) -> Tensor:
    out = x.new_empty(seg_lengths.numel(), x.shape[1])
    grid, block_d = _pool_grid(seg_lengths.numel(), x.shape[1])
    _pool_fwd[grid](x, _starts(seg_lengths), seg_lengths, out, x.shape[1], IS_MAX=mode == "max",
                    BLOCK_N=BLOCK_TOKENS, BLOCK_D=block_d)
    return out


def segment_pool_bwd(grad: Tensor, x: Tensor, seg_lengths: Tensor, mode: str) -> Tensor:
    dx = torch.empty_like(x)  # every token belongs to one segment: fully written
    grid, block_d = _pool_grid(seg_lengths.numel(), x.shape[1])
    _pool_bwd[grid](x, grad, _starts(seg_lengths), seg_lengths, dx, x.shape[1], IS_MAX=mode == "max",
                    BLOCK_N=BLOCK_TOKENS, BLOCK_D=block_d)
    return dx


def _segment_attn_args(q: Tensor) -> dict:
    n_segments, n_slots, n_heads, head_dim = q.shape
    return dict(n_slots=n_slots, n_heads=n_heads, head_dim=head_dim, scale=1.0 / math.sqrt(head_dim),
                BLOCK_K=triton.next_power_of_2(n_slots), BLOCK_N=BLOCK_TOKENS,
                BLOCK_D=triton.next_power_of_2(head_dim))


def segment_cross_attention_fwd(q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor) -> Tensor:
    out = torch.empty_like(q)
    grid = (q.shape[0], q.shape[2])
    _segment_attn_fwd[grid](q, key, value, _starts(seg_lengths), seg_lengths, out,
                            **_segment_attn_args(q))
    return out


def segment_cross_attention_bwd(grad: Tensor, q: Tensor, key: Tensor, value: Tensor,
                                seg_lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    dq, dk, dv = torch.empty_like(q), torch.empty_like(key), torch.empty_like(value)
    grid = (q.shape[0], q.shape[2])
    _segment_attn_bwd[grid](q, key, value, grad, _starts(seg_lengths), seg_lengths, dq, dk, dv,
                            **_segment_attn_args(q))
    return dq, dk, dv


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
