"""Exact FLOP and parameter counts for the LST and the baseline, from the config alone (no model needed).

FLOPs are forward FLOPs of the matmuls (2 per multiply-add); training costs 3× forward (backward = 2×). The
local stacks are counted per token, the global stack per patch (or per token for the baseline), over the real
positions of each row (`batch_flops`: the collator's right padding is not the model's work). Self-attention is
counted over the (query, key) pairs its causal, windowed, document-confined mask allows (`attention`: what a
block-sparse kernel does) and over every pair of the row (`attention_dense`: what a masked dense kernel does);
cross-attention over the (token, slot) pairs that pooling and unpooling really use.
"""

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import Tensor

from lst_train.config import ModelConfig, StackConfig
from lst_train.model.layers import ffn_hidden_dim
from lst_train.model.layout import PatchLayout, TokenLayout
from lst_train.vocab import Vocab


@dataclass
class ForwardFlops:
    """Forward FLOPs of one stack (or of a whole model, once summed)."""

    linear: int = 0
    """All nn.Linear matmuls (projections, feed-forwards, pooling and global-to-slots projections, output head)."""
    attention: int = 0
    """Self-attention QK^T and AV over the pairs the mask allows."""
    attention_dense: int = 0
    """Self-attention QK^T and AV over every pair of each row (what a dense masked kernel computes)."""
    cross_attention: int = 0
    """Pooling and unpooling QK^T and AV over the (token, slot) pairs they use."""

    @property
    def total(self) -> int:
        return self.linear + self.attention + self.cross_attention

    def __add__(self, other: "ForwardFlops") -> "ForwardFlops":
        return ForwardFlops(*(getattr(self, f) + getattr(other, f) for f in ("linear", "attention",
                                                                            "attention_dense", "cross_attention")))


@dataclass
class StepFlops:
    """FLOPs of one forward pass over a batch, per stack."""

    stacks: dict[str, ForwardFlops] = field(default_factory=dict)

    @property
    def forward(self) -> ForwardFlops:
        return sum(self.stacks.values(), ForwardFlops())

    @property
    def training(self) -> int:
        """Forward + backward FLOPs of a training step over this batch."""
        return 3 * self.forward.total

    def __add__(self, other: "StepFlops") -> "StepFlops":
        names = self.stacks.keys() | other.stacks.keys()
        return StepFlops({n: self.stacks.get(n, ForwardFlops()) + other.stacks.get(n, ForwardFlops()) for n in names})


def attention_pairs(doc_lengths: Iterable[int], window: int) -> int:
    """Exact (query, key) pairs of a causal mask confined to documents, with a window (0 = no limit)."""
    pairs = 0
    for n in doc_lengths:
        w = n if window <= 0 else min(window, n)
        pairs += w * (w + 1) // 2 + (n - w) * w
    return pairs


def _block_params(dim: int, multiple_of: int) -> int:
    return 4 * dim * dim + 3 * dim * ffn_hidden_dim(dim, multiple_of) + 2 * dim


def _cross_attention_params(dim: int) -> int:
    return 4 * dim * dim + 2 * dim


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameters per top-level submodule (the model's own child names), plus 'total'."""
    vocab_size = Vocab.from_config(cfg.vocab).size
    g = cfg.global_transformer
    global_params = g.n_layers * _block_params(g.dim, cfg.ffn_multiple_of)
    if cfg.arch == "baseline":
        counts = {"tok_embeddings": vocab_size * g.dim, "global_transformer": global_params,
                  "norm": g.dim, "output": g.dim * vocab_size}
    else:
        e, d, k = cfg.encoder, cfg.decoder, cfg.patch_slots
        counts = {
            "encoder": vocab_size * e.dim + e.n_layers * _block_params(e.dim, cfg.ffn_multiple_of)
            + k * e.dim * e.dim + _cross_attention_params(e.dim),
            "global_transformer": global_params,
            "decoder": g.dim * k * d.dim
            + d.n_layers * (_cross_attention_params(d.dim) + _block_params(d.dim, cfg.ffn_multiple_of))
            + d.dim + d.dim * vocab_size,
        }
    counts["total"] = sum(counts.values())
    return counts


def _stack_flops(stack: StackConfig, multiple_of: int, positions: int, doc_lengths: Sequence[int]) -> ForwardFlops:
    """A stack of pre-norm blocks over `positions` positions of one row."""
    per_position = 4 * stack.dim * stack.dim + 3 * stack.dim * ffn_hidden_dim(stack.dim, multiple_of)
    return ForwardFlops(
        linear=2 * stack.n_layers * per_position * positions,
        attention=4 * stack.dim * stack.n_layers * attention_pairs(doc_lengths, stack.window),
        attention_dense=4 * stack.dim * stack.n_layers * positions * positions,
    )


def row_flops(cfg: ModelConfig, n_tokens: int, n_patches: int = 0, token_docs: Sequence[int] | None = None,
              patch_docs: Sequence[int] | None = None, unpool_patches_read: int | None = None) -> StepFlops:
    """Forward FLOPs of one row of `n_tokens` tokens (and `n_patches` patch positions for the LST).

    token_docs / patch_docs: document lengths along the row (default: one document). unpool_patches_read: the
    number of (token, patch) pairs unpooling reads in total (default: every token reads `unpool_window` patches,
    an upper bound; `batch_flops` passes the exact number).
    """
    token_docs = [n_tokens] if token_docs is None else token_docs
    vocab_size = Vocab.from_config(cfg.vocab).size
    g = cfg.global_transformer
    if cfg.arch == "baseline":
        stacks = {"global_transformer": _stack_flops(g, cfg.ffn_multiple_of, n_tokens, token_docs),
                  "output": ForwardFlops(linear=2 * g.dim * vocab_size * n_tokens)}
        return StepFlops(stacks)
    patch_docs = [n_patches] if patch_docs is None else patch_docs
    k, d = cfg.patch_slots, cfg.encoder.dim
    slots = n_patches * k
    if unpool_patches_read is None:
        unpool_patches_read = n_tokens * cfg.unpool_window
    encoder = _stack_flops(cfg.encoder, cfg.ffn_multiple_of, n_tokens, token_docs) + ForwardFlops(
        # pooling: init projection per patch, queries/outputs per slot, keys/values per token
        linear=2 * (d * k * d * n_patches + 2 * d * d * slots + 2 * d * d * n_tokens),
        cross_attention=4 * d * k * n_tokens,
    )
    decoder = _stack_flops(cfg.decoder, cfg.ffn_multiple_of, n_tokens, token_docs) + ForwardFlops(
        # the global -> k slots projection per patch; unpooling per layer: queries/outputs per token, keys/values
        # per slot; then the output head
        linear=2 * g.dim * k * d * n_patches
        + 2 * cfg.decoder.n_layers * (2 * d * d * n_tokens + 2 * d * d * slots) + 2 * d * vocab_size * n_tokens,
        cross_attention=4 * d * k * cfg.decoder.n_layers * unpool_patches_read,
    )
    return StepFlops({"encoder": encoder,
                      "global_transformer": _stack_flops(g, cfg.ffn_multiple_of, n_patches, patch_docs),
                      "decoder": decoder})


def _run_lengths(ids: Tensor) -> list[int]:
    return torch.unique_consecutive(ids, return_counts=True)[1].tolist()


def batch_flops(cfg: ModelConfig, tokens: Tensor, patch_lengths: Tensor | None = None,
                closed_early: Tensor | None = None, row_tokens: Sequence[int] | None = None,
                row_patches: Sequence[int] | None = None) -> StepFlops:
    """Exact forward FLOPs of a batch, from its documents and patch partition (`closed_early` as the model's).

    row_tokens / row_patches: each row's real tokens and patches, before the collator's right padding (default: the
    whole width). Only real positions are counted: padding is an implementation cost of batching rows of unequal
    length (the LST's; baseline rows are all `seq_units` long), so charging it would give the LST fewer steps at an
    equal budget for work that is not the model's.
    """
    eos = Vocab.from_config(cfg.vocab).eos
    batch, seq_len = tokens.shape
    row_tokens = [seq_len] * batch if row_tokens is None else [int(n) for n in row_tokens]
    if cfg.arch == "baseline":
        layout = TokenLayout.build(tokens, eos)
        return sum((row_flops(cfg, n, token_docs=_run_lengths(layout.doc_ids[b, :n]))
                    for b, n in enumerate(row_tokens)), StepFlops())
    row_patches = [patch_lengths.shape[1]] * batch if row_patches is None else [int(p) for p in row_patches]
    layout = PatchLayout.build(tokens, patch_lengths, eos, cfg.unpool_window, closed_early)
    read = (layout.unpool_last - layout.unpool_first + 1).clamp(min=0).view(batch, seq_len)
    total = StepFlops()
    for b, (n, p) in enumerate(zip(row_tokens, row_patches)):
        total = total + row_flops(cfg, n, p, _run_lengths(layout.tokens.doc_ids[b, :n]),
                                  _run_lengths(layout.patch_doc_ids[b, :p]), int(read[b, :n].sum()))
    return total
