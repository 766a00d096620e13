"""Parallelism applied to a single-device model: activation checkpointing, torch.compile and FSDP2 per block.

Model code knows nothing of this module. Every transformer block of every stack becomes one FSDP unit (and one AC
/ compile unit); the token embeddings and the output head are units of their own (their all-gathers then overlap
the blocks' compute instead of holding the whole root's parameters for the step, as torchtitan does), and the root
is wrapped for the rest (pooling, norms, the global-to-slots projection).
"""

import torch
from torch import nn
from torch.distributed._composable import checkpoint
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from lst_train.config.training import TrainingConfig


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of every stack (encoder, global, decoder layers), in order."""
    return [layer for module in model.modules() for layer in getattr(module, "layers", [])
            if isinstance(module.layers, nn.ModuleList)]


def vocabulary_modules(model: nn.Module) -> list[nn.Module]:
    """The token embeddings and output heads (the [vocab × width] matrices) of every stack."""
    return [module for name, module in model.named_modules() if name.rsplit(".", 1)[-1] in ("tok_embeddings", "output")]


def param_dtype(cfg: TrainingConfig, device: torch.device) -> torch.dtype:
    if cfg.mixed_precision == "bf16" or (cfg.mixed_precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return torch.float32


def parallelize(model: nn.Module, cfg: TrainingConfig, device: torch.device) -> nn.Module:
    blocks = transformer_blocks(model)
    compile_blocks = cfg.compile == "true" or (cfg.compile == "auto" and device.type == "cuda")
    for index, block in enumerate(blocks):
        if cfg.activation_checkpoint == "full" or (cfg.activation_checkpoint == "selective" and index % 2 == 0):
            checkpoint(block)
        if compile_blocks:
            block.compile()
    policy = MixedPrecisionPolicy(param_dtype=param_dtype(cfg, device), reduce_dtype=torch.float32)
    for module in blocks + vocabulary_modules(model):
        fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model
