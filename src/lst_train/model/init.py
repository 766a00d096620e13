"""Deterministic weight init that does not depend on sharding: every parameter is drawn whole from a generator
seeded by (seed, its name), then each rank keeps its own shard. One world size or another, the same weights."""

import hashlib
import math

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

OUTPUT_PROJECTIONS = ("wo", "w2")
# Wrappers that AC / compile may insert into parameter names; the init plan uses the model's own names.
_WRAPPER_PARTS = ("_checkpoint_wrapped_module.", "_orig_mod.")


def canonical_name(name: str) -> str:
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    return name


def stack_init_plan(module: nn.Module, prefix: str, std: float, n_layers: int) -> dict[str, tuple[str, float]]:
    """(kind, std) per parameter of one stack: truncated normal Linears (residual output projections scaled by
    depth), ones for RMSNorm, unit normal for embeddings."""
    plan = {}
    for name, child in module.named_modules():
        full = canonical_name(f"{prefix}.{name}" if name else prefix)
        if isinstance(child, nn.Linear):
            last = name.rsplit(".", 1)[-1]
            plan[f"{full}.weight"] = ("trunc_normal",
                                      std / math.sqrt(2 * n_layers) if last in OUTPUT_PROJECTIONS else std)
        elif isinstance(child, nn.RMSNorm):
            plan[f"{full}.weight"] = ("ones", 0.0)
        elif isinstance(child, nn.Embedding):
            plan[f"{full}.weight"] = ("normal", 1.0)
    return plan


def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}|{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _full_value(kind: str, std: float, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    if kind == "ones":
        return torch.ones(shape)
    if kind == "normal":
        return torch.randn(shape, generator=generator) * std
    value = torch.empty(shape)
    nn.init.trunc_normal_(value, std=std, a=-3 * std, b=3 * std, generator=generator)
    return value


@torch.no_grad()
def initialize_parameters(model: nn.Module, plan: dict[str, tuple[str, float]], seed: int) -> None:
    """Write every parameter (plain or FSDP2-sharded DTensor) from its plan entry and (seed, name)."""
    for name, param in model.named_parameters():
        kind, std = plan[canonical_name(name)]
        full = _full_value(kind, std, param.shape, _generator(seed, canonical_name(name)))
        if isinstance(param, DTensor):
            local = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None).to_local()
            param.to_local().copy_(local)
        else:
            param.copy_(full)
