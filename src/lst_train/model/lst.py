"""The Latent Speech-Text Transformer: PatchEncoder -> GlobalTransformer over patches -> PatchDecoder."""

from torch import Tensor, nn

from lst_train.config import ModelConfig
from lst_train.model.global_transformer import GlobalTransformer
from lst_train.model.layers import init_weights
from lst_train.model.layout import PatchLayout
from lst_train.model.patch_decoder import PatchDecoder
from lst_train.model.patch_encoder import PatchEncoder
from lst_train.vocab import Vocab


class LatentSpeechTextTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab = Vocab.from_config(cfg.vocab)
        self.encoder = PatchEncoder(cfg, self.vocab.size)
        self.global_transformer = GlobalTransformer(cfg)
        self.decoder = PatchDecoder(cfg, self.vocab.size)

    def init_weights(self) -> None:
        """Deterministic init from the current torch RNG state (call after materializing meta tensors)."""
        init_weights(self.encoder, self.cfg.init_std, self.cfg.encoder.n_layers)
        init_weights(self.global_transformer, self.cfg.init_std, self.cfg.global_transformer.n_layers)
        init_weights(self.decoder, self.cfg.init_std, self.cfg.decoder.n_layers)
        std = self.cfg.decoder.dim ** -0.5
        nn.init.trunc_normal_(self.decoder.output.weight, std=std, a=-3 * std, b=3 * std)

    def forward(self, tokens: Tensor, patch_lengths: Tensor) -> Tensor:
        """tokens [B, T] int64, patch_lengths [B, P] int64 (rows sum to T, right-padded with 0) -> logits [B, T, V]."""
        if patch_lengths is None:
            raise ValueError("the LST model needs patch_lengths [B, P]; see lst_train.patching")
        layout = PatchLayout.build(tokens, patch_lengths, self.vocab.eos, self.cfg.unpool_window)
        token_states, patches = self.encoder(tokens, layout)
        global_states = self.global_transformer(patches, layout.patch_doc_ids, layout.patch_positions)
        return self.decoder(token_states, global_states, layout)
