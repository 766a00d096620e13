"""The Latent Speech-Text Transformer: PatchEncoder -> GlobalTransformer over patches -> PatchDecoder."""

from torch import Tensor, nn

from lst_train.config import ModelConfig
from lst_train.model.global_transformer import GlobalTransformer
from lst_train.model.init import stack_init_plan
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

    def init_plan(self) -> dict[str, tuple[str, float]]:
        """How each parameter is initialised (see lst_train.model.init)."""
        cfg = self.cfg
        plan = {**stack_init_plan(self.encoder, "encoder", cfg.init_std, cfg.encoder.n_layers),
                **stack_init_plan(self.global_transformer, "global_transformer", cfg.init_std,
                                  cfg.global_transformer.n_layers),
                **stack_init_plan(self.decoder, "decoder", cfg.init_std, cfg.decoder.n_layers)}
        plan["decoder.output.weight"] = ("trunc_normal", cfg.decoder.dim ** -0.5)
        return plan

    def forward(self, tokens: Tensor, patch_lengths: Tensor, closed_early: Tensor | None = None,
                targets: Tensor | None = None) -> Tensor:
        """tokens [B, T] int64, patch_lengths [B, P] int64 (rows sum to T, right-padded with 0), closed_early [B, P]
        bool (patches whose end the next token decided: their last token reads the patch before; None = none)
        -> logits [B, T, V]; with `targets` [B, T] (next-token ids) -> per-token losses [B, T], computed in
        chunks. The loader's batches carry both (lst_train.data.pieces.row_partition for token rows)."""
        if patch_lengths is None:
            raise ValueError("the LST model needs patch_lengths [B, P]; see lst_train.data.pieces.row_partition")
        layout = PatchLayout.build(tokens, patch_lengths, self.vocab.eos, self.cfg.unpool_window, closed_early)
        token_states, patches = self.encoder(tokens, layout)
        global_states = self.global_transformer(patches, layout.patch_doc_ids, layout.patch_positions)
        return self.decoder(token_states, global_states, layout, targets)
