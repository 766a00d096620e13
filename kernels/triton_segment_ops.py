"""Triton kernels (forward and backward) for the two pooling ops of lst_kernels.reference, segment_pool and
segment_cross_attention, their launchers, and the pieces the unpooling kernels share (triton_range_attention).

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
def _pool_block(starts_ptr, lengths_ptr, dim, BLOCK_D: tl.constexpr):
    """This program's segment and block of columns: their indices and mask, the segment's start and length."""
    seg = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    return seg, cols, cols < dim, tl.load(starts_ptr + seg), tl.load(lengths_ptr + seg)


@triton.jit
def _pool_fwd(x_ptr, starts_ptr, lengths_ptr, out_ptr, dim, IS_MAX: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_D: tl.constexpr):
    seg, cols, col_mask, start, length = _pool_block(starts_ptr, lengths_ptr, dim, BLOCK_D)
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
    seg, cols, col_mask, start, length = _pool_block(starts_ptr, lengths_ptr, dim, BLOCK_D)
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
def online_softmax_step(m, denom, scores):
    """One block [R, C] of an online softmax over C: the new running max and denominator, the factor that rescales
    what was summed under the old max, and the block's weights exp(scores - max). A row with no finite score yet
    keeps max -inf, weights 0 and denominator 0."""
    m_new = tl.maximum(m, tl.max(scores, axis=1))
    m_safe = tl.where(m_new > float("-inf"), m_new, 0.0)
    alpha = tl.exp(m - m_safe)
    p = tl.exp(scores - m_safe[:, None])
    return m_new, denom * alpha + tl.sum(p, axis=1), alpha, p


@triton.jit
def _segment_tokens(q, k_ptr, v_ptr, start, length, i, head, n_heads, head_dim, dims, scale, BLOCK_N: tl.constexpr):
    """Tokens i .. i + BLOCK_N of one segment, for one head: the slots' scores [K, BLOCK_N] (-inf past the
    segment's end), the block's keys and values [BLOCK_N, D], and their offsets and mask in [N, H, dh]."""
    toks = i + tl.arange(0, BLOCK_N)
    inside = toks < length
    offsets = ((start + toks)[:, None] * n_heads + head) * head_dim + dims[None, :]
    mask = inside[:, None] & (dims < head_dim)[None, :]
    k = tl.load(k_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    scores = tl.where(inside[None, :], tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale, float("-inf"))
    return scores, k, v, offsets, mask


@triton.jit
def slot_block(seg, head, n_slots, n_heads, head_dim, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
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
    dims, slot_offsets, slot_mask = slot_block(seg, head, n_slots, n_heads, head_dim, BLOCK_K, BLOCK_D)
    q = tl.load(q_ptr + slot_offsets, mask=slot_mask, other=0.0).to(tl.float32)
    start = tl.load(starts_ptr + seg)
    length = tl.load(lengths_ptr + seg)
    m = tl.full([BLOCK_K], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_K], tl.float32)
    acc = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    for i in range(0, length, BLOCK_N):
        scores, k, v, offsets, mask = _segment_tokens(q, k_ptr, v_ptr, start, length, i, head, n_heads, head_dim,
                                                      dims, scale, BLOCK_N)
        m, denom, alpha, p = online_softmax_step(m, denom, scores)
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
    dims, slot_offsets, slot_mask = slot_block(seg, head, n_slots, n_heads, head_dim, BLOCK_K, BLOCK_D)
    q = tl.load(q_ptr + slot_offsets, mask=slot_mask, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + slot_offsets, mask=slot_mask, other=0.0).to(tl.float32)
    start = tl.load(starts_ptr + seg)
    length = tl.load(lengths_ptr + seg)
    m = tl.full([BLOCK_K], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_K], tl.float32)
    delta = tl.zeros([BLOCK_K], tl.float32)
    for i in range(0, length, BLOCK_N):
        scores, k, v, offsets, mask = _segment_tokens(q, k_ptr, v_ptr, start, length, i, head, n_heads, head_dim,
                                                      dims, scale, BLOCK_N)
        m, denom, alpha, p = online_softmax_step(m, denom, scores)
        delta = delta * alpha + tl.sum(p * tl.sum(do[:, None, :] * v[None, :, :], axis=2), axis=1)
    denom = tl.where(denom > 0, denom, 1.0)
    delta = delta / denom
    dq = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    for i in range(0, length, BLOCK_N):
        scores, k, v, offsets, mask = _segment_tokens(q, k_ptr, v_ptr, start, length, i, head, n_heads, head_dim,
                                                      dims, scale, BLOCK_N)
        p = tl.exp(scores - m[:, None]) / denom[:, None]  # 0 past the segment's end (scores -inf there)
        ds = p * (tl.sum(do[:, None, :] * v[None, :, :], axis=2) - delta[:, None]) * scale
        dq += tl.sum(ds[:, :, None] * k[None, :, :], axis=1)
        dk = tl.sum(ds[:, :, None] * q[:, None, :], axis=0)
        dv = tl.sum(p[:, :, None] * do[:, None, :], axis=0)
        tl.store(dk_ptr + offsets, dk.to(dk_ptr.dtype.element_ty), mask=mask)
        tl.store(dv_ptr + offsets, dv.to(dv_ptr.dtype.element_ty), mask=mask)
    tl.store(dq_ptr + slot_offsets, dq.to(dq_ptr.dtype.element_ty), mask=slot_mask)




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
