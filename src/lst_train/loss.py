"""Next-token cross-entropy over all non-pad targets, with separate sums for text and speech targets."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lst_train.vocab import MODALITY_SPEECH, MODALITY_TEXT, Vocab


@dataclass
class LossSums:
    """Summed losses and target counts (sums, so they add up across micro-batches and ranks before dividing)."""

    total: Tensor
    text: Tensor
    speech: Tensor
    n_total: Tensor
    n_text: Tensor
    n_speech: Tensor

    def mean(self) -> Tensor:
        return self.total / self.n_total.clamp(min=1)


def next_token_loss_sums(logits: Tensor, tokens: Tensor, vocab: Vocab) -> LossSums:
    """logits [B, T, V] (logits[:, t] predict tokens[:, t+1]); targets that are <pad> are ignored."""
    targets = tokens[:, 1:]
    per_token = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="none"
    ).view_as(targets)
    valid = targets != vocab.pad
    modality = vocab.modality(targets)
    text = valid & (modality == MODALITY_TEXT)
    speech = valid & (modality == MODALITY_SPEECH)
    zero = per_token.new_zeros(())
    return LossSums(
        total=torch.where(valid, per_token, zero).sum(),
        text=torch.where(text, per_token, zero).sum(),
        speech=torch.where(speech, per_token, zero).sum(),
        n_total=valid.sum(),
        n_text=text.sum(),
        n_speech=speech.sum(),
    )
