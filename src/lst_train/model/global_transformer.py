"""GlobalTransformer: the large causal stack over patches (LST) or tokens (baseline), block-diagonal per document."""

from torch import Tensor, nn

from lst_train.config import ModelConfig
from lst_train.model.layers import RotaryEmbedding, TransformerBlock
from lst_train.model.attention_mask import self_attention_mask


class GlobalTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        stack = cfg.global_transformer
        self.cfg = cfg
        self.layers = nn.ModuleList(
            TransformerBlock(stack.dim, stack.n_heads, cfg.ffn_multiple_of, cfg.norm_eps) for _ in range(stack.n_layers)
        )

    def forward(self, h: Tensor, doc_ids: Tensor, positions: Tensor) -> Tensor:
        """h [B, L, D] with per-element document ids and in-document positions [B, L] -> [B, L, D]."""
        stack = self.cfg.global_transformer
        rope = RotaryEmbedding(positions, stack.dim // stack.n_heads, self.cfg.rope_theta)
        mask = self_attention_mask(doc_ids, stack.window, self.cfg.attention)
        for layer in self.layers:
            h = layer(h, rope, mask)
        return h
