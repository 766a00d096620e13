"""Next-token cross-entropy over all valid targets, with separate sums for text and speech targets."""

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


IGNORE_INDEX = -100


def labels_from_tokens(tokens: Tensor, vocab: Vocab) -> Tensor:
    """labels[:, t] = tokens[:, t+1], ignored where that is <pad>, where t is an <eos> (the next document cannot be
    predicted from this one), and at the last position."""
    labels = torch.full_like(tokens, IGNORE_INDEX)
    labels[:, :-1] = tokens[:, 1:]
    ignored = torch.zeros_like(tokens, dtype=torch.bool)
    ignored[:, :-1] = (tokens[:, 1:] == vocab.pad) | (tokens[:, :-1] == vocab.eos)
    return labels.masked_fill(ignored, IGNORE_INDEX)


def next_token_loss_sums(logits: Tensor, labels: Tensor, vocab: Vocab) -> LossSums:
    """logits [B, T, V] and labels [B, T] (labels[:, t] is the target of logits[:, t]; IGNORE_INDEX is skipped)."""
    valid = labels != IGNORE_INDEX
    targets = labels.masked_fill(~valid, 0)
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view_as(labels)
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
