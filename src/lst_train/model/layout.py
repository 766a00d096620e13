"""Where every token and patch of a packed batch sits: documents, positions, patch membership, attention ranges.

Computed once per forward from the tokens (documents end at <eos>) and the patch partition, then shared by all
stacks. Positions restart at every document, so a document's outputs do not depend on where it sits in the row.
"""

from dataclasses import dataclass

import torch
from torch import Tensor


def document_ids(tokens: Tensor, eos_id: int) -> Tensor:
    """Per token, the index of its document in the row: <eos> belongs to the document it ends. [B, T]."""
    is_eos = (tokens == eos_id).long()
    return is_eos.cumsum(dim=1) - is_eos


def positions_in_document(doc_ids: Tensor) -> Tensor:
    """Per element, its offset from the first element of its document. [B, L]."""
    index = torch.arange(doc_ids.shape[1], device=doc_ids.device).expand_as(doc_ids)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    first = torch.where(starts, index, 0).cummax(dim=1).values
    return index - first


@dataclass
class TokenLayout:
    """Documents and positions of the tokens of a batch."""

    doc_ids: Tensor
    """[B, T] document index of each token."""
    positions: Tensor
    """[B, T] position of each token inside its document (RoPE)."""

    @classmethod
    def build(cls, tokens: Tensor, eos_id: int) -> "TokenLayout":
        doc_ids = document_ids(tokens, eos_id)
        return cls(doc_ids, positions_in_document(doc_ids))


@dataclass
class PatchLayout:
    """The patch partition of a batch, flattened for the segment ops of lst_kernels."""

    tokens: TokenLayout
    """Documents and positions of the tokens."""
    seg_lengths: Tensor
    """[B*P] patch lengths, row after row (zeros are padding patches)."""
    patch_doc_ids: Tensor
    """[B, P] document of each patch (that of its first token)."""
    patch_positions: Tensor
    """[B, P] position of each patch inside its document (RoPE of the global transformer)."""
    unpool_first: Tensor
    """[B*T] first global patch index whose slots token t's decoder reads (first > last: none)."""
    unpool_last: Tensor
    """[B*T] last such patch: the latest patch whose end was decidable from tokens <= t (see `build`)."""

    @classmethod
    def build(cls, tokens: Tensor, patch_lengths: Tensor, eos_id: int, unpool_window: int,
              closed_early: Tensor | None = None) -> "PatchLayout":
        """closed_early [B, P] bool: patches whose end was decided by the token after them (a static speech patch
        cut short by its span's end); None = none. Token t reads the patch before the one holding t+1 (the shift
        that keeps it causal), except that the last token of a patch that closed early reads the patch before it:
        that patch exists only because of token t+1."""
        batch, seq_len = tokens.shape
        n_patches = patch_lengths.shape[1]
        token_layout = TokenLayout.build(tokens, eos_id)
        ends = patch_lengths.cumsum(dim=1)
        index = torch.arange(seq_len, device=tokens.device).expand(batch, seq_len).contiguous()
        patch_ids = torch.searchsorted(ends, index, right=True)
        n_real = (patch_lengths > 0).sum(dim=1, keepdim=True)
        # Token t predicts t+1 and may read only patches that end at or before t+1: all but the one holding t+1.
        last = torch.minimum(torch.searchsorted(ends, index + 1, right=True) - 1, n_real - 1)
        if closed_early is not None:
            undecided = closed_early.gather(1, last.clamp(min=0)) & (last == patch_ids)
            last = last - undecided.long()
        doc_start = index - token_layout.positions
        first_of_doc = patch_ids.gather(1, doc_start)
        first = torch.maximum(last - unpool_window + 1, first_of_doc)
        starts = (ends - patch_lengths).clamp(max=seq_len - 1)
        patch_doc_ids = token_layout.doc_ids.gather(1, starts)
        offsets = (torch.arange(batch, device=tokens.device) * n_patches)[:, None]
        return cls(
            tokens=token_layout,
            seg_lengths=patch_lengths.reshape(-1),
            patch_doc_ids=patch_doc_ids,
            patch_positions=positions_in_document(patch_doc_ids),
            unpool_first=(first + offsets).reshape(-1),
            unpool_last=(last + offsets).reshape(-1),
        )
