"""The debug models learn: they overfit one fixed interleaved text+speech batch on CPU."""

import random

import pytest
import torch

from lst_train.loss import labels_from_tokens, next_token_loss_sums
from lst_train.model import build_model
from lst_train.patching import pad_patch_lengths, static_row_patch_lengths

from conftest import debug_config, random_document


def _fixed_batch(vocab, rows=4, length=64):
    """One long document per row: a document's first token cannot be predicted from nothing, so packing several
    short documents per row would put a floor under the loss."""
    rng = random.Random(0)
    return [([vocab.bos] + random_document(vocab, rng, 24))[:length] for _ in range(rows)]


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_debug_model_overfits_a_fixed_batch(arch):
    cfg = debug_config(arch)
    model = build_model(cfg.model)
    vocab = model.vocab
    rows = _fixed_batch(vocab)
    tokens = torch.tensor(rows)
    patch_lengths = pad_patch_lengths([static_row_patch_lengths(r, vocab, 4) for r in rows]) if arch == "lst" else None
    labels = labels_from_tokens(tokens, vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    for _ in range(300):
        sums = next_token_loss_sums(model(tokens, patch_lengths), labels, vocab)
        loss = sums.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.05:
            break
    assert sums.n_text > 0 and sums.n_speech > 0
    assert loss.item() < 0.1, f"final loss {loss.item():.3f}"
    assert (sums.speech / sums.n_speech).item() < 0.2 and (sums.text / sums.n_text).item() < 0.2
