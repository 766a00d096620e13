"""What one global unit of a family's data holds (raw tokens, speech seconds), and FLOPs per row from it.

Measured: a few batches of the family's real loader (one reader), FLOPs from the exact counter over those very
batches (padding and document boundaries included, as the trainer counts them). Given in the sweep file: rows of
round(units × tokens_per_patch) tokens as one document, no padding.
"""

import dataclasses
import itertools
from dataclasses import dataclass, field

from torch import Tensor

from lst_train.config import ModelConfig
from lst_train.data.dataset import build_dataloader
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.stats import LoaderStats
from lst_train.flops import batch_flops, row_flops


@dataclass
class DataProfile:
    tokens_per_unit: float
    """Raw (non-pad) tokens per global unit: 1 for the baseline, mean tokens per patch for the LST."""
    speech_seconds_per_unit: float
    """Seconds of speech per global unit."""
    source: str
    """Where the numbers come from, for the plan table."""
    batches: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = field(default_factory=list)
    """Measured (tokens, patch_lengths, closed_early, row tokens, row patches) batches; empty when given."""

    def row_flops(self, model: ModelConfig, units: int) -> float:
        """Training FLOPs (fwd+bwd) of one packed row of `units` global units."""
        if not self.batches:
            return float(row_flops(model, round(units * self.tokens_per_unit), units).training)
        total = sum(batch_flops(model, *batch).training for batch in self.batches)
        return total / sum(batch[0].shape[0] for batch in self.batches)


def measure(spec: LoaderSpec, n_batches: int) -> DataProfile:
    """Read `n_batches` batches of the family's loader; the curriculum (if any) is laid over exactly them."""
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, num_workers=0), total_steps=n_batches,
                               grad_accum_steps=1)
    stats = LoaderStats()
    batches = []
    for batch in itertools.islice(build_dataloader(spec), n_batches):
        stats.update(batch)
        batches.append((batch.tokens, batch.patch_lengths, batch.closed_early, batch.row_stats["tokens"],
                        batch.row_stats["patches"]))
    s = stats.summary()
    return DataProfile(s["tokens"] / s["patches"], s["speech_seconds"] / s["patches"],
                       f"measured over {n_batches} loader batches", batches)


def given(tokens_per_patch: float, speech_token_fraction: float, frame_rate: float, n_codebooks: int) -> DataProfile:
    """From the sweep file: each raw token is speech with probability `speech_token_fraction`."""
    seconds_per_token = speech_token_fraction / (frame_rate * n_codebooks)
    return DataProfile(tokens_per_patch, tokens_per_patch * seconds_per_token,
                       f"sweep file: {tokens_per_patch} tokens per unit")
