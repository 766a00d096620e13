"""Self-attention masks: causal, confined to the document, optionally windowed.

Three forms of one rule: a dense boolean [B, 1, L, L] mask for scaled_dot_product_attention (simple, and what the
tests check); for a window W much shorter than L on CPU, a BandedMask: SDPA over blocks of W queries, each against
its own and the previous block's keys (all a window reaches), so the scores are [L, 2W] instead of [L, L]; or a
FlexAttention BlockMask that skips the masked blocks (CUDA: memory O(L) instead of O(L²) and no work outside the
window). flex_attention has no CPU backward, so 'auto' picks flex on CUDA only.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, flex_attention

FLEX_BLOCK = 128


def causal_document_mask(doc_ids: Tensor, window: int) -> Tensor:
    """Boolean [B, 1, L, L]: i sees j iff j <= i, same document, and i - j < window (0 = no limit)."""
    index = torch.arange(doc_ids.shape[1], device=doc_ids.device)
    mask = (index[None, :] <= index[:, None])[None] & (doc_ids[:, :, None] == doc_ids[:, None, :])
    if window > 0:
        mask &= (index[:, None] - index[None, :] < window)[None]
    return mask[:, None]


@dataclass
class BandedMask:
    allowed: Tensor
    """[B·n, 1, W, 2W] bool: query block b (positions bW..bW+W-1) may read keys (b-1)W..bW+W-1."""
    window: int


def causal_document_banded_mask(doc_ids: Tensor, window: int) -> BandedMask:
    """The windowed rule of causal_document_mask, block by block (see BandedMask); positions past the row and
    before it belong to no document (id -1): a real query never reads them."""
    batch, length = doc_ids.shape
    n_blocks = -(-length // window)
    ids = F.pad(doc_ids, (window, n_blocks * window - length), value=-1)
    index = torch.arange(-window, n_blocks * window, device=doc_ids.device)
    q_ids, k_ids = ids[:, window:].view(batch, n_blocks, window), ids.unfold(1, 2 * window, window)
    q_pos, k_pos = index[window:].view(n_blocks, window), index.unfold(0, 2 * window, window)
    delta = q_pos[:, :, None] - k_pos[:, None, :]
    allowed = ((delta >= 0) & (delta < window))[None] & (q_ids[..., :, None] == k_ids[..., None, :])
    return BandedMask(allowed.view(batch * n_blocks, 1, window, 2 * window), window)


def _key_blocks(x: Tensor, window: int, n_blocks: int) -> Tensor:
    """[B, H, L, dh] -> [B·n, H, 2W, dh]: for each query block, the keys (values) of it and the block before."""
    batch, heads, length, dim = x.shape
    padded = F.pad(x, (0, 0, window, n_blocks * window - length))
    blocks = padded.unfold(2, 2 * window, window)  # [B, H, n, dh, 2W]
    return blocks.permute(0, 2, 1, 4, 3).reshape(batch * n_blocks, heads, 2 * window, dim)


def banded_attention(q: Tensor, k: Tensor, v: Tensor, mask: BandedMask) -> Tensor:
    """SDPA of q, k, v [B, H, L, dh] under a BandedMask; equal to the dense mask's result."""
    batch, heads, length, dim = q.shape
    window = mask.window
    n_blocks = -(-length // window)
    queries = F.pad(q, (0, 0, 0, n_blocks * window - length)).view(batch, heads, n_blocks, window, dim)
    queries = queries.transpose(1, 2).reshape(batch * n_blocks, heads, window, dim)
    out = F.scaled_dot_product_attention(queries, _key_blocks(k, window, n_blocks), _key_blocks(v, window, n_blocks),
                                         attn_mask=mask.allowed)
    return out.view(batch, n_blocks, heads, window, dim).transpose(1, 2).reshape(batch, heads, -1, dim)[:, :, :length]


def causal_document_block_mask(doc_ids: Tensor, window: int) -> BlockMask:
    """The same rule as a FlexAttention BlockMask, built at block granularity (block_classes): O(B·(L/128)²) small
    tensor ops and no compile, whatever L is (create_block_mask would evaluate the rule on all L² pairs, or compile
    once per new length)."""

    def rule(b, h, q_idx, kv_idx):
        allowed = (kv_idx <= q_idx) & (doc_ids[b, q_idx] == doc_ids[b, kv_idx])
        return allowed & (q_idx - kv_idx < window) if window > 0 else allowed

    partial, full = block_classes(doc_ids, window)
    length = doc_ids.shape[1]
    return BlockMask.from_kv_blocks(*_kv_blocks(partial), *_kv_blocks(full), BLOCK_SIZE=FLEX_BLOCK, mask_mod=rule,
                                    seq_lengths=(length, length))


def block_classes(doc_ids: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """(partial, full) [B, n, n] bool over (query block, key block) of FLEX_BLOCK positions: full = every pair
    allowed (the rule is skipped there: exact), partial = some pair may be allowed (the rule is applied:
    conservative). Documents are contiguous (ids non-decreasing along a row), so a block's first and last
    positions bound the documents it holds."""
    batch, length = doc_ids.shape
    n_blocks = -(-length // FLEX_BLOCK)
    first = torch.arange(n_blocks, device=doc_ids.device) * FLEX_BLOCK
    last = (first + FLEX_BLOCK - 1).clamp(max=length - 1)
    doc_first, doc_last = doc_ids[:, first], doc_ids[:, last]  # [B, n]
    q_first, q_last, k_first, k_last = first[:, None], last[:, None], first[None, :], last[None, :]
    some = (k_first <= q_last) & (doc_first[:, None, :] <= doc_last[:, :, None]) \
        & (doc_last[:, None, :] >= doc_first[:, :, None])
    one_doc = doc_first == doc_last
    # A query block cut by the row's end is never full (its key blocks, all before it, then are not either).
    every = (k_last <= q_first) & one_doc[:, :, None] & one_doc[:, None, :] \
        & (doc_first[:, :, None] == doc_first[:, None, :]) & (q_last - q_first + 1 == FLEX_BLOCK)[None]
    if window > 0:
        some = some & (q_first - k_last < window)
        every = every & (q_last - k_first < window)
    return some & ~every, every


def _kv_blocks(selected: Tensor) -> tuple[Tensor, Tensor]:
    """[B, n, n] bool -> (counts [B, 1, n], indices [B, 1, n, n]: the selected key blocks first, in order)."""
    order = torch.argsort((~selected).to(torch.int8), dim=-1, stable=True)
    return selected.sum(dim=-1, dtype=torch.int32)[:, None], order.to(torch.int32)[:, None]


def self_attention_mask(doc_ids: Tensor, window: int, attention: str) -> Tensor | BandedMask | BlockMask:
    """The mask in the form the configured attention ('auto' | 'sdpa' | 'flex') consumes: SDPA goes banded when
    the window is at most a quarter of the row (half the scores or fewer)."""
    if attention == "flex" or (attention == "auto" and doc_ids.is_cuda):
        return causal_document_block_mask(doc_ids, window)
    if 0 < window and 4 * window <= doc_ids.shape[1]:
        return causal_document_banded_mask(doc_ids, window)
    return causal_document_mask(doc_ids, window)


_compiled_flex: dict = {}

# Test-only: a torch.compile backend (e.g. "eager" or a counting one) that routes CPU through the compiled flex path,
# so the compile count of the real entry point can be checked without a GPU. None: CPU runs flex uncompiled.
CPU_FLEX_BACKEND = None


def compiled_flex_attention(backend="inductor"):
    """flex_attention compiled once per backend with dynamic shapes: token lengths change from batch to batch,
    and a static compile would recompile for each new length until dynamo gives up (after 8) and falls back to
    the unfused flex that materialises [B, H, L, L] scores."""
    if backend not in _compiled_flex:
        _compiled_flex[backend] = torch.compile(flex_attention, dynamic=True, backend=backend)
    return _compiled_flex[backend]


def masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | BandedMask | BlockMask) -> Tensor:
    """q, k, v [B, H, L, dh] under any mask form."""
    if isinstance(mask, BandedMask):
        return banded_attention(q, k, v, mask)
    if isinstance(mask, BlockMask):
        if q.is_cuda:  # flex_attention is fast only compiled
            return compiled_flex_attention()(q, k, v, block_mask=mask)
        if CPU_FLEX_BACKEND is not None:
            return compiled_flex_attention(CPU_FLEX_BACKEND)(q, k, v, block_mask=mask)
        return flex_attention(q, k, v, block_mask=mask)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
