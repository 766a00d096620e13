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


def labels_from_tokens(tokens: Tensor, vocab: Vocab, prompt: Tensor | None = None) -> Tensor:
    """labels[:, t] = tokens[:, t+1], ignored where that is <pad>, where t is an <eos> (the next document cannot be
    predicted from this one), where token t+1 is prompt (`prompt`: bool [B, T], task fine-tuning), and at the last
    position."""
    labels = torch.full_like(tokens, IGNORE_INDEX)
    labels[:, :-1] = tokens[:, 1:]
    ignored = torch.zeros_like(tokens, dtype=torch.bool)
    ignored[:, :-1] = (tokens[:, 1:] == vocab.pad) | (tokens[:, :-1] == vocab.eos)
    if prompt is not None:
        ignored[:, :-1] |= prompt[:, 1:]
    return labels.masked_fill(ignored, IGNORE_INDEX)


def next_token_loss_sums(logits: Tensor, labels: Tensor, vocab: Vocab) -> LossSums:
    """logits [B, T, V] and labels [B, T] (labels[:, t] is the target of logits[:, t]; IGNORE_INDEX is skipped)."""
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets_of(labels).flatten(),
                                reduction="none").view_as(labels)
    return loss_sums(per_token, labels, vocab)


def targets_of(labels: Tensor) -> Tensor:
    """Labels with the ignored positions set to id 0 (their losses are computed, then left out of every sum)."""
    return labels.masked_fill(labels == IGNORE_INDEX, 0)


def loss_sums(per_token: Tensor, labels: Tensor, vocab: Vocab) -> LossSums:
    """Sum per-token losses [B, T] over the valid targets of `labels` [B, T], overall and per modality."""
    valid = labels != IGNORE_INDEX
    modality = vocab.modality(labels.masked_fill(~valid, 0))
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


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Per-token cross-entropy of logits = hidden @ weight.T, computed `chunk` rows at a time and never held whole:
    the forward keeps only each row's log-sum-exp, the backward recomputes each chunk's logits. Peak memory is
    O(chunk · V) instead of O(N · V) fp32 logits (plus their softmax) for a whole batch; the values are those of
    F.cross_entropy over the full logits (fp32 softmax of the matmul's output), at the cost of one more logits
    matmul in the backward."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
        losses, lse = [], []
        for start in range(0, hidden.shape[0], chunk):
            logits = (hidden[start: start + chunk] @ weight.T).float()
            chunk_lse = torch.logsumexp(logits, dim=-1)
            target_logit = logits.gather(1, targets[start: start + chunk, None])[:, 0]
            losses.append(chunk_lse - target_logit)
            lse.append(chunk_lse)
        ctx.save_for_backward(hidden, weight, targets, torch.cat(lse))
        ctx.chunk = chunk
        return torch.cat(losses)

    @staticmethod
    def backward(ctx, grad_losses: Tensor):
        hidden, weight, targets, lse = ctx.saved_tensors
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        for start in range(0, hidden.shape[0], ctx.chunk):
            end = start + ctx.chunk
            # softmax - one_hot(target), scaled by the incoming gradient, in place: on a CPU these passes over the
            # [chunk, V] logits, not the matmuls, are most of the head's time.
            grad_logits = (hidden[start:end] @ weight.T).float()
            grad_logits.sub_(lse[start:end, None]).exp_()
            grad_logits.scatter_add_(1, targets[start:end, None], grad_logits.new_full((len(grad_logits), 1), -1.0))
            grad_logits = grad_logits.mul_(grad_losses[start:end, None]).to(hidden.dtype)
            grad_hidden[start:end] = grad_logits @ weight
            grad_weight += (grad_logits.T @ hidden[start:end]).float()
        return grad_hidden, grad_weight.to(weight.dtype), None, None


def chunked_linear_cross_entropy(hidden: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
    """hidden [N, d], weight [V, d], targets [N] (any valid id where ignored) -> per-token losses [N] (fp32)."""
    return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk)
