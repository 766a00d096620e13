"""The interleaved baseline (SpiritLM-style): the same global stack over raw tokens, its own embedding and head."""

from torch import Tensor, nn

from lst_train.config import ModelConfig
from lst_train.model.global_transformer import GlobalTransformer
from lst_train.model.layers import OutputHead
from lst_train.model.init import stack_init_plan
from lst_train.model.layout import TokenLayout
from lst_train.vocab import Vocab


class InterleavedBaseline(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab = Vocab.from_config(cfg.vocab)
        dim = cfg.global_transformer.dim
        self.tok_embeddings = nn.Embedding(self.vocab.size, dim)
        self.global_transformer = GlobalTransformer(cfg)
        self.norm = nn.RMSNorm(dim, eps=cfg.norm_eps)
        self.output = OutputHead(dim, self.vocab.size, cfg.output_chunk)

    def init_plan(self) -> dict[str, tuple[str, float]]:
        """How each parameter is initialised (see lst_train.model.init)."""
        plan = stack_init_plan(self, "", self.cfg.init_std, self.cfg.global_transformer.n_layers)
        plan = {name.lstrip("."): value for name, value in plan.items()}
        plan["output.weight"] = ("trunc_normal", self.cfg.global_transformer.dim ** -0.5)
        return plan

    def forward(self, tokens: Tensor, patch_lengths: Tensor | None = None, closed_early: Tensor | None = None,
                targets: Tensor | None = None) -> Tensor:
        """tokens [B, T] -> logits [B, T, V], or per-token losses [B, T] given `targets` (as the LST's); the patch
        partition is accepted for a uniform call and ignored."""
        layout = TokenLayout.build(tokens, self.vocab.eos)
        h = self.global_transformer(self.tok_embeddings(tokens), layout.doc_ids, layout.positions)
        return self.output(self.norm(h), targets)
