"""Transformer building blocks shared by every stack: RMSNorm, RoPE, SwiGLU, masked self-attention, blocks, the
output head."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask

from lst_train.loss import chunked_linear_cross_entropy
from lst_train.model.attention_mask import masked_attention


def ffn_hidden_dim(dim: int, multiple_of: int) -> int:
    """SwiGLU hidden width: 8/3 × dim rounded up to a multiple of `multiple_of` (Llama's rule)."""
    hidden = int(8 * dim / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


class RotaryEmbedding:
    """cos/sin tables for explicit per-element positions (positions restart at each document)."""

    def __init__(self, positions: Tensor, head_dim: int, theta: float):
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
        angles = positions.float()[..., None] * inv_freq  # [B, L, dh/2]
        self.cos = angles.cos()[:, :, None, :]
        self.sin = angles.sin()[:, :, None, :]

    def apply(self, x: Tensor) -> Tensor:
        """Rotate x [B, L, H, dh] (half-split convention), computing in fp32."""
        x1, x2 = x.float().chunk(2, dim=-1)
        rotated = torch.cat((x1 * self.cos - x2 * self.sin, x1 * self.sin + x2 * self.cos), dim=-1)
        return rotated.to(x.dtype)


class KVCache:
    """Keys and values [B, H, L, dh] of the positions one attention layer has decoded so far (generation)."""

    def __init__(self):
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: Tensor, v: Tensor, window: int) -> tuple[Tensor, Tensor]:
        """Add the new positions; returns the keys and values they attend to (the last `window`, 0 = all)."""
        self.k = k if self.k is None else torch.cat((self.k, k), dim=2)
        self.v = v if self.v is None else torch.cat((self.v, v), dim=2)
        if window > 0:
            return self.k[:, :, -window:], self.v[:, :, -window:]
        return self.k, self.v


class SelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, rope: RotaryEmbedding, mask: Tensor | BlockMask) -> Tensor:
        batch, length, _ = x.shape
        shape = (batch, length, self.n_heads, self.head_dim)
        q = rope.apply(self.wq(x).view(shape)).transpose(1, 2)
        k = rope.apply(self.wk(x).view(shape)).transpose(1, 2)
        v = self.wv(x).view(shape).transpose(1, 2)
        out = masked_attention(q, k, v, mask)
        return self.wo(out.transpose(1, 2).reshape(batch, length, -1))

    def decode(self, x: Tensor, rope: RotaryEmbedding, cache: KVCache, window: int) -> Tensor:
        """One new position x [B, 1, D] of a single document, attending to the cached ones and itself."""
        batch = x.shape[0]
        shape = (batch, 1, self.n_heads, self.head_dim)
        q = rope.apply(self.wq(x).view(shape)).transpose(1, 2)
        k = rope.apply(self.wk(x).view(shape)).transpose(1, 2)
        k, v = cache.append(k, self.wv(x).view(shape).transpose(1, 2), window)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(batch, 1, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)); x + ffn(norm(x))."""

    def __init__(self, dim: int, n_heads: int, ffn_multiple_of: int, norm_eps: float):
        super().__init__()
        self.attention_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.attention = SelfAttention(dim, n_heads)
        self.ffn_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.feed_forward = FeedForward(dim, ffn_hidden_dim(dim, ffn_multiple_of))

    def forward(self, x: Tensor, rope: RotaryEmbedding, mask: Tensor) -> Tensor:
        x = x + self.attention(self.attention_norm(x), rope, mask)
        return x + self.feed_forward(self.ffn_norm(x))

    def decode(self, x: Tensor, rope: RotaryEmbedding, cache: KVCache, window: int) -> Tensor:
        """The block for one new position [B, 1, D] (see SelfAttention.decode)."""
        x = x + self.attention.decode(self.attention_norm(x), rope, cache, window)
        return x + self.feed_forward(self.ffn_norm(x))



class OutputHead(nn.Linear):
    """The vocabulary projection. Given targets it returns per-token cross-entropy [B, T] computed a chunk of rows
    at a time (lst_train.loss.ChunkedLinearCrossEntropy) instead of fp32 logits [B, T, V]; one module, so one FSDP
    unit, either way."""

    def __init__(self, dim: int, vocab_size: int, chunk: int):
        super().__init__(dim, vocab_size, bias=False)
        self.chunk = chunk

    def forward(self, h: Tensor, targets: Tensor | None = None) -> Tensor:
        if targets is None:
            return super().forward(h).float()
        flat = chunked_linear_cross_entropy(h.reshape(-1, h.shape[-1]), self.weight, targets.reshape(-1), self.chunk)
        return flat.view(targets.shape)
