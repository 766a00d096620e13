"""Models: the Latent Speech-Text Transformer and the interleaved baseline, built from a ModelConfig."""

import torch
from torch import nn

from lst_train.config import ModelConfig
from lst_train.model.baseline import InterleavedBaseline
from lst_train.model.init import initialize_parameters
from lst_train.model.lst import LatentSpeechTextTransformer


def build_model(cfg: ModelConfig, seed: int | None = None) -> nn.Module:
    """Build the model named by cfg.arch on the current default device (its patch ops use cfg.kernels).

    Weights are initialised unless on meta: from `seed`, or from a seed drawn from torch's RNG. Meta models are
    initialised after sharding with `initialize_parameters(model, model.init_plan(), seed)`.
    """
    model_class = {"lst": LatentSpeechTextTransformer, "baseline": InterleavedBaseline}[cfg.arch]
    model = model_class(cfg)
    if not any(p.is_meta for p in model.parameters()):
        seed = int(torch.randint(0, 2**62, ())) if seed is None else seed
        initialize_parameters(model, model.init_plan(), seed)
    return model


__all__ = ["InterleavedBaseline", "LatentSpeechTextTransformer", "build_model"]
