"""Models: the Latent Speech-Text Transformer and the interleaved baseline, built from a ModelConfig."""

import torch
from torch import nn

from lst_train.config import ModelConfig
from lst_train.model.baseline import InterleavedBaseline
from lst_train.model.lst import LatentSpeechTextTransformer


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model named by cfg.arch on the current default device; weights are initialised unless on meta."""
    model_class = {"lst": LatentSpeechTextTransformer, "baseline": InterleavedBaseline}[cfg.arch]
    model = model_class(cfg)
    if not any(p.is_meta for p in model.parameters()):
        with torch.no_grad():
            model.init_weights()
    return model


__all__ = ["InterleavedBaseline", "LatentSpeechTextTransformer", "build_model"]
