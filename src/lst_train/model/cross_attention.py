"""Patch pooling (token states -> k slots per patch) and unpooling (slots -> token states).

Both are segment ops over the patch partition (lst_kernels.reference), never dense [patches × tokens] masks.
"""

from torch import Tensor, nn

import lst_kernels

from lst_train.model.layout import PatchLayout


class CrossAttentionProjections(nn.Module):
    """Pre-norm query/key/value/output projections of one cross-attention (no RoPE: membership is the position)."""

    def __init__(self, dim: int, n_heads: int, norm_eps: float):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.query_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.kv_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def heads(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:-1], self.n_heads, self.head_dim)

    def project(self, queries: Tensor, keys_values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalize and project, split into heads: ([..., H, dh] each)."""
        q = self.heads(self.wq(self.query_norm(queries)))
        kv = self.kv_norm(keys_values)
        return q, self.heads(self.wk(kv)), self.heads(self.wv(kv))

    def output(self, x: Tensor) -> Tensor:
        return self.wo(x.flatten(-2))


class PatchPooling(nn.Module):
    """k query slots per patch, initialised by max/mean pooling of its token states and a projection, refined by
    cross-attention to the tokens of their own patch only; the slots concatenate to the global width."""

    def __init__(self, dim: int, n_heads: int, n_slots: int, mode: str, norm_eps: float, backend: str = "auto"):
        super().__init__()
        self.n_slots = n_slots
        self.mode = mode
        self.backend = backend  # lst_kernels backend of this module's ops (model.kernels)
        self.init_projection = nn.Linear(dim, n_slots * dim, bias=False)
        self.cross_attention = CrossAttentionProjections(dim, n_heads, norm_eps)

    def forward(self, token_states: Tensor, layout: PatchLayout) -> Tensor:
        """token_states [B, T, d] -> patch vectors [B, P, k·d]."""
        batch, seq_len, dim = token_states.shape
        n_patches = layout.patch_positions.shape[1]
        slots = self.pool(token_states.reshape(batch * seq_len, dim), layout.seg_lengths)
        return slots.reshape(batch, n_patches, self.n_slots * dim)

    def pool(self, flat: Tensor, seg_lengths: Tensor) -> Tensor:
        """flat [N, d] cut into segments of `seg_lengths` [S] -> slots [S, k, d]."""
        dim = flat.shape[-1]
        pooled = lst_kernels.segment_pool(flat, seg_lengths, self.mode, self.backend)
        slots = self.init_projection(pooled).view(-1, self.n_slots, dim)
        q, k, v = self.cross_attention.project(slots, flat)
        attended = lst_kernels.segment_cross_attention(q, k, v, seg_lengths, self.backend)
        return slots + self.cross_attention.output(attended)


class PatchUnpooling(nn.Module):
    """Each token attends to the k slots of the global output of the patch(es) its decoder may read."""

    def __init__(self, dim: int, n_heads: int, n_slots: int, window: int, norm_eps: float, backend: str = "auto",
                 deterministic: bool = False):
        super().__init__()
        self.n_slots = n_slots
        self.window = window
        self.backend = backend  # lst_kernels backend of this module's ops (model.kernels)
        # True: a backward without atomics; False leaves it to torch.use_deterministic_algorithms.
        self.deterministic = deterministic or None
        self.cross_attention = CrossAttentionProjections(dim, n_heads, norm_eps)

    def forward(self, token_states: Tensor, global_states: Tensor, layout: PatchLayout) -> Tensor:
        """token_states [B, T, d], global_states [B, P, k·d] -> the residual update [B, T, d]."""
        batch, seq_len, dim = token_states.shape
        update = self.attend(token_states.reshape(batch * seq_len, dim), global_states,
                             layout.unpool_first, layout.unpool_last)
        return update.view(batch, seq_len, dim)

    def attend(self, queries: Tensor, global_states: Tensor, first: Tensor, last: Tensor) -> Tensor:
        """queries [N, d] read the slots of global patches first[n]..last[n] of `global_states` [..., k·d]
        (flattened over rows) -> the residual update [N, d]."""
        slots = global_states.reshape(-1, self.n_slots, queries.shape[-1])  # [B*P, k, d]
        q, k, v = self.cross_attention.project(queries, slots)
        attended = lst_kernels.range_cross_attention(q, k, v, first, last, self.window, self.backend,
                                                     self.deterministic)
        return self.cross_attention.output(attended)
