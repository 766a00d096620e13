"""What the training data loader depends on, as one typed object: its sections of the recipe and the two numbers
of the training schedule it follows. Entry points build it from the recipe (`LoaderSpec.from_recipe`); the loader,
the in-training evaluator and the sweep profiler take it and nothing larger."""

import dataclasses
from dataclasses import dataclass

from lst_train.config import Config, DataConfig, ModelConfig, PatchingConfig, SourceConfig
from lst_train.config.patching import evaluation_patching
from lst_train.data.patchers import Patcher
from lst_train.vocab import Vocab


@dataclass(frozen=True)
class LoaderSpec:
    data: DataConfig
    """Sources, tokenizer, codec, interleaving, packing, seed and workers."""
    model: ModelConfig
    """The vocabulary layout, the architecture (only the LST patches speech) and the exact FLOPs of each batch."""
    patching: PatchingConfig
    """How the LST cuts speech spans into patches (unused by the baseline)."""
    total_steps: int
    """Training steps: the horizon of the patching curriculum."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step: maps each batch to the step whose curriculum it follows."""
    sources_key: str = "data.sources"
    """The recipe key of data.sources here, for errors about them (evaluation.validation when reading those)."""

    @classmethod
    def from_recipe(cls, cfg: Config) -> "LoaderSpec":
        return cls(cfg.data, cfg.model, cfg.patching, cfg.training.steps, cfg.training.grad_accum_steps)

    def vocab(self) -> Vocab:
        return Vocab.from_config(self.model.vocab)

    def patcher(self) -> Patcher | None:
        """The LST's speech patcher; None for the baseline, whose every token is its own unit."""
        return Patcher(self.patching, self.total_steps) if self.model.arch == "lst" else None

    def reading(self, sources: list[SourceConfig]) -> "LoaderSpec":
        """The same loader over evaluation.validation's sources, in the calling process, in shard order (the same
        first rows at every evaluation, without filling a shuffle buffer first), patched as the model is scored
        (a curriculum or mixed model on static patches, not on the aligned ones of a curriculum's first step)."""
        data = dataclasses.replace(self.data, sources=sources, num_workers=0, shuffle_buffer=0)
        return dataclasses.replace(self, data=data, patching=evaluation_patching(self.patching),
                                   sources_key="evaluation.validation")
