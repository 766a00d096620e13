"""PatchDecoder: encoder token states; before each block, unpooling from the global outputs; norm and head.

The global outputs are projected once (a learned linear map, global width -> k × local width, as BLT does) into
the k key/value slots of each patch that every layer's unpooling reads.
"""

from torch import Tensor, nn

from lst_train.config import ModelConfig
from lst_train.model.cross_attention import PatchUnpooling
from lst_train.model.layers import OutputHead, RotaryEmbedding, TransformerBlock
from lst_train.model.attention_mask import self_attention_mask
from lst_train.model.layout import PatchLayout


class PatchDecoderLayer(nn.Module):
    """Unpooling cross-attention then a windowed causal self-attention block (one FSDP unit)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        stack = cfg.decoder
        self.unpooling = PatchUnpooling(stack.dim, stack.n_heads, cfg.patch_slots, cfg.unpool_window, cfg.norm_eps,
                                        cfg.kernels, cfg.kernels_deterministic)
        self.block = TransformerBlock(stack.dim, stack.n_heads, cfg.ffn_multiple_of, cfg.norm_eps)

    def forward(self, h: Tensor, global_states: Tensor, layout: PatchLayout, rope: RotaryEmbedding, mask: Tensor):
        h = h + self.unpooling(h, global_states, layout)
        return self.block(h, rope, mask)


class PatchDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.global_projection = nn.Linear(cfg.global_transformer.dim, cfg.patch_slots * cfg.decoder.dim, bias=False)
        self.layers = nn.ModuleList(PatchDecoderLayer(cfg) for _ in range(cfg.decoder.n_layers))
        self.norm = nn.RMSNorm(cfg.decoder.dim, eps=cfg.norm_eps)
        self.output = OutputHead(cfg.decoder.dim, vocab_size, cfg.output_chunk)

    def forward(self, token_states: Tensor, global_states: Tensor, layout: PatchLayout,
                targets: Tensor | None = None) -> Tensor:
        """global_states [B, P, global width] -> logits [B, T, V] (logits[:, t] predict token t+1), or with
        `targets` [B, T] the per-token losses [B, T] (see OutputHead)."""
        stack = self.cfg.decoder
        rope = RotaryEmbedding(layout.tokens.positions, stack.dim // stack.n_heads, self.cfg.rope_theta)
        mask = self_attention_mask(layout.tokens.doc_ids, stack.window, self.cfg.attention)
        h = token_states
        global_states = self.global_projection(global_states)
        for layer in self.layers:
            h = layer(h, global_states, layout, rope, mask)
        return self.output(self.norm(h), targets)
