"""AdamW with parameter groups and the LR schedule, through torchtitan's optimizer and scheduler containers."""

import re

from torch import nn
from torchtitan.components.optimizer import LRSchedulersContainer, OptimizersContainer
from torchtitan.components.optimizer.optimizer import ParamGroupConfig

from lst_train.config.training import TrainingConfig

NO_DECAY = r"(norm|tok_embeddings)"
LOCAL = r"^(encoder|decoder)\."


def build_optimizers(model: nn.Module, cfg: TrainingConfig, arch: str, device_type: str) -> OptimizersContainer:
    """No weight decay on norms and embeddings; the LST's local stacks may have their own LR."""
    def group(pattern: str, lr: float, decay: bool) -> ParamGroupConfig:
        return ParamGroupConfig(pattern=pattern, optimizer_name="AdamW", optimizer_kwargs={
            "lr": lr, "betas": (cfg.beta1, cfg.beta2), "eps": 1e-8, "weight_decay": cfg.weight_decay if decay else 0.0})

    local_lr = cfg.lr * cfg.local_lr_multiplier
    groups = []
    if arch == "lst" and cfg.local_lr_multiplier != 1.0:
        groups += [group(rf"{LOCAL}.*{NO_DECAY}", local_lr, False), group(LOCAL, local_lr, True)]
    groups += [group(NO_DECAY, cfg.lr, False), group(r".*", cfg.lr, True)]
    names = [name for name, _ in model.named_parameters()]
    groups = [g for g in groups if any(re.search(g.pattern, n) for n in names)]
    config = OptimizersContainer.Config(param_groups=groups,
                                        implementation="fused" if device_type == "cuda" else "foreach")
    return OptimizersContainer(config, model_parts=[model])


def build_lr_schedulers(optimizers: OptimizersContainer, cfg: TrainingConfig) -> LRSchedulersContainer:
    """Linear warmup, then cosine to min_lr_ratio, or WSD (stable, then cosine over the last decay_ratio)."""
    config = LRSchedulersContainer.Config(
        warmup_steps=cfg.warmup_steps, decay_ratio=cfg.decay_ratio if cfg.schedule == "wsd" else None,
        decay_type="cosine", min_lr_factor=cfg.min_lr_ratio)
    return config.build(optimizers=optimizers, training_steps=cfg.steps)
