"""The debug models learn: they overfit one fixed interleaved text+speech batch on CPU; and the LST cannot learn
where a speech span ends from the patch partition (the span-end leak)."""

import math
import random

import pytest
import torch

from lst_train.loss import labels_from_tokens, next_token_loss_sums
from lst_train.model import build_model

from helpers import debug_config, random_document, static_partition


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
    partition = static_partition(rows, vocab, 4) if arch == "lst" else ()
    labels = labels_from_tokens(tokens, vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    for _ in range(300):
        sums = next_token_loss_sums(model(tokens, *partition), labels, vocab)
        loss = sums.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.05:
            break
    assert sums.n_text > 0 and sums.n_speech > 0
    assert loss.item() < 0.1, f"final loss {loss.item():.3f}"
    assert (sums.speech / sums.n_speech).item() < 0.2 and (sums.text / sums.n_text).item() < 0.2


SPAN_MIN, SPAN_MAX = 5, 20


def _span_end_rows(vocab, rng, rows=8, length=160):
    """Documents `<s>` + L random speech tokens (L uniform in 5..20) + `<t>` w `<eos>`, packed into rows."""
    out = []
    for _ in range(rows):
        row = [vocab.bos]
        while len(row) < length:
            n = rng.randint(SPAN_MIN, SPAN_MAX)
            row += [vocab.speech_marker] + [vocab.speech_id(rng.randrange(64)) for _ in range(n)]
            row += [vocab.text_marker, rng.randrange(50), vocab.eos]
        out.append(row[:length])
    return out


def test_lst_cannot_learn_span_ends_from_the_partition():
    """Static p=4: a span that does not end on the grid ends with a short patch that exists only because the next
    token is <t>. If the decoder at the last speech token could read it, <t> would be nearly free there (measured
    with the old rule: 0.14 nats after 300 steps). The honest optimum is the hazard of the span length,
    mean(log(21 - L)) = 1.92 nats; the loss of <t> must stay above half of it."""
    cfg = debug_config("lst")
    model = build_model(cfg.model, seed=0)
    vocab = model.vocab
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)
    rng = random.Random(0)
    for _ in range(300):
        rows = _span_end_rows(vocab, rng)
        tokens = torch.tensor(rows)
        loss = next_token_loss_sums(model(tokens, *static_partition(rows, vocab, 4)),
                                    labels_from_tokens(tokens, vocab), vocab).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rows = _span_end_rows(vocab, random.Random(99), rows=32)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor(rows), *static_partition(rows, vocab, 4)), dim=-1)
    short, full = [], []
    for b, row in enumerate(rows):
        run = 0
        for t in range(len(row) - 1):
            run = run + 1 if vocab.speech_start <= row[t] < vocab.speech_end else 0
            if run and row[t + 1] == vocab.text_marker:
                (full if run % 4 == 0 else short).append(-logprobs[b, t, vocab.text_marker].item())
    honest = sum(math.log(SPAN_MAX + 1 - n) for n in range(SPAN_MIN, SPAN_MAX + 1)) / (SPAN_MAX - SPAN_MIN + 1)
    short_loss, full_loss = sum(short) / len(short), sum(full) / len(full)
    print(f"span-end <t> loss: after a short last patch {short_loss:.3f} (n={len(short)}), after a full one "
          f"{full_loss:.3f} (n={len(full)}); honest optimum {honest:.3f}")
    assert len(short) > 50 and len(full) > 10
    assert short_loss > honest / 2 and full_loss > honest / 2
