"""Self-attention masks: causal, confined to the document, optionally windowed.

Two forms of one rule: a dense boolean [B, 1, L, L] mask for scaled_dot_product_attention (CPU: simple, and what
the tests check), or a FlexAttention BlockMask that skips the masked blocks (CUDA: memory O(L) instead of O(L²)
and no work outside the window). flex_attention has no CPU backward, so 'auto' picks flex on CUDA only.
"""

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

_compiled_flex = None


def causal_document_mask(doc_ids: Tensor, window: int) -> Tensor:
    """Boolean [B, 1, L, L]: i sees j iff j <= i, same document, and i - j < window (0 = no limit)."""
    index = torch.arange(doc_ids.shape[1], device=doc_ids.device)
    mask = (index[None, :] <= index[:, None])[None] & (doc_ids[:, :, None] == doc_ids[:, None, :])
    if window > 0:
        mask &= (index[:, None] - index[None, :] < window)[None]
    return mask[:, None]


def causal_document_block_mask(doc_ids: Tensor, window: int) -> BlockMask:
    """The same rule as a FlexAttention BlockMask."""

    def rule(b, h, q_idx, kv_idx):
        allowed = (kv_idx <= q_idx) & (doc_ids[b, q_idx] == doc_ids[b, kv_idx])
        return allowed & (q_idx - kv_idx < window) if window > 0 else allowed

    batch, length = doc_ids.shape
    return create_block_mask(rule, batch, None, length, length, device=doc_ids.device,
                             _compile=doc_ids.is_cuda)


def self_attention_mask(doc_ids: Tensor, window: int, attention: str) -> Tensor | BlockMask:
    """The mask in the form the configured attention ('auto' | 'sdpa' | 'flex') consumes."""
    if attention == "flex" or (attention == "auto" and doc_ids.is_cuda):
        return causal_document_block_mask(doc_ids, window)
    return causal_document_mask(doc_ids, window)


def masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | BlockMask) -> Tensor:
    """q, k, v [B, H, L, dh] under either mask form."""
    global _compiled_flex
    if isinstance(mask, BlockMask):
        if not q.is_cuda:
            return flex_attention(q, k, v, block_mask=mask)
        if _compiled_flex is None:  # flex_attention is fast only compiled
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        return _compiled_flex(q, k, v, block_mask=mask)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
