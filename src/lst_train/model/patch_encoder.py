"""PatchEncoder: token embeddings -> windowed causal self-attention inside each document -> patch pooling."""

from torch import Tensor, nn

from lst_train.config import ModelConfig
from lst_train.model.cross_attention import PatchPooling
from lst_train.model.layers import RotaryEmbedding, TransformerBlock
from lst_train.model.attention_mask import self_attention_mask
from lst_train.model.layout import PatchLayout


class PatchEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        stack = cfg.encoder
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(vocab_size, stack.dim)
        self.layers = nn.ModuleList(
            TransformerBlock(stack.dim, stack.n_heads, cfg.ffn_multiple_of, cfg.norm_eps) for _ in range(stack.n_layers)
        )
        self.pooling = PatchPooling(stack.dim, stack.n_heads, cfg.patch_slots, cfg.pooling, cfg.norm_eps, cfg.kernels)

    def forward(self, tokens: Tensor, layout: PatchLayout) -> tuple[Tensor, Tensor]:
        """tokens [B, T] -> (token states [B, T, d_local], patch vectors [B, P, k·d_local])."""
        stack = self.cfg.encoder
        rope = RotaryEmbedding(layout.tokens.positions, stack.dim // stack.n_heads, self.cfg.rope_theta)
        mask = self_attention_mask(layout.tokens.doc_ids, stack.window, self.cfg.attention)
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h, rope, mask)
        return h, self.pooling(h, layout)
