"""The training loss: the chunked output head gives the full-logits cross-entropy's values and gradients."""

import random

import pytest
import torch

from lst_train.loss import chunked_linear_cross_entropy, labels_from_tokens, loss_sums, next_token_loss_sums, \
    targets_of
from lst_train.model import build_model

from helpers import debug_config, random_stream, static_partition


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_linear_cross_entropy_equals_the_full_one(chunk):
    generator = torch.Generator().manual_seed(chunk)
    hidden = torch.randn(50, 16, generator=generator, requires_grad=True)
    weight = torch.randn(300, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 300, (50,), generator=generator)
    scale = torch.rand(50, generator=generator)  # per-token weights, as the loss's valid-target mask and scaling
    full = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="none")
    chunked = chunked_linear_cross_entropy(hidden, weight, targets, chunk)
    torch.testing.assert_close(chunked, full)
    expected = torch.autograd.grad((full * scale).sum(), (hidden, weight))
    got = torch.autograd.grad((chunked * scale).sum(), (hidden, weight))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_models_give_the_same_loss_and_gradients_through_the_chunked_head(arch):
    cfg = debug_config(arch, "model.output_chunk=37")
    model = build_model(cfg.model, seed=0)
    rows = [random_stream(model.vocab, random.Random(b), 90) for b in range(3)]
    tokens = torch.tensor(rows)
    partition = static_partition(rows, model.vocab, cfg.patching.size) if arch == "lst" else ()
    labels = labels_from_tokens(tokens, model.vocab)
    full = next_token_loss_sums(model(tokens, *partition), labels, model.vocab)
    expected = torch.autograd.grad(full.mean(), list(model.parameters()))
    chunked = loss_sums(model(tokens, *(partition or (None, None)), targets_of(labels)), labels, model.vocab)
    got = torch.autograd.grad(chunked.mean(), list(model.parameters()))
    for field in ("total", "text", "speech"):
        torch.testing.assert_close(getattr(chunked, field), getattr(full, field), rtol=1e-5, atol=1e-5)
    for (name, _), a, b in zip(model.named_parameters(), got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
