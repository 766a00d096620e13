"""Causality and document isolation of the LST (every patching) and the baseline."""

import random

import pytest
import torch

from lst_train.model import build_model
from lst_train.patching import pad_patch_lengths, static_row_patch_lengths

from conftest import debug_config, random_document, random_partition

TOL = 1e-5


def _row(vocab, rng, length):
    """<bos> then documents (some starting straight with speech, no marker) until `length`, then <pad>s."""
    row = [vocab.bos]
    while len(row) < length - 4:
        row += random_document(vocab, rng, rng.randint(1, 4), start_with_speech=rng.random() < 0.5,
                               first_marker=rng.random() < 0.7)
    return (row + [vocab.pad] * length)[:length]


def _partition(row, vocab, rng, patching):
    if patching == "ragged":
        return random_partition(row, vocab, rng, max_len=7)
    return static_row_patch_lengths(row, vocab, patching)


def _perturbed_batch(row, vocab, rng):
    """Row t+... : a copy of `row` with every token after position t replaced by a random id."""
    copies = []
    for t in range(len(row)):
        tail = [rng.randrange(vocab.size) for _ in range(len(row) - t - 1)]
        copies.append(row[: t + 1] + tail)
    return torch.tensor(copies)


@pytest.mark.parametrize("patching", [1, 2, 4, "ragged"])
@pytest.mark.parametrize("unpool_window", [1, 3])
def test_lst_logits_depend_only_on_past_tokens(patching, unpool_window):
    cfg = debug_config("lst", f"model.unpool_window={unpool_window}", "model.encoder.window=5",
                       "model.decoder.window=6")
    model = build_model(cfg.model).eval()
    vocab = model.vocab
    rng = random.Random(f"{patching}-{unpool_window}")
    for _ in range(2):
        row = _row(vocab, rng, 40)
        lengths = _partition(row, vocab, rng, patching)
        perturbed = _perturbed_batch(row, vocab, rng)
        patch_lengths = pad_patch_lengths([lengths] * len(row))
        with torch.no_grad():
            reference = model(torch.tensor([row]), patch_lengths[:1])[0]
            logits = model(perturbed, patch_lengths)
        for t in range(len(row)):
            diff = (logits[t, : t + 1] - reference[: t + 1]).abs().max().item()
            assert diff <= TOL, f"logits at <= {t} changed by {diff} when tokens after {t} changed"
        # The test must be able to fail: the future does change later logits.
        assert (logits[0, 1:] - reference[1:]).abs().max() > 1e-3


def test_baseline_logits_depend_only_on_past_tokens():
    model = build_model(debug_config("baseline").model).eval()
    vocab = model.vocab
    rng = random.Random(1)
    row = _row(vocab, rng, 40)
    perturbed = _perturbed_batch(row, vocab, rng)
    with torch.no_grad():
        reference = model(torch.tensor([row]))[0]
        logits = model(perturbed)
    for t in range(len(row)):
        assert (logits[t, : t + 1] - reference[: t + 1]).abs().max().item() <= TOL


def test_token_reads_global_state_of_patch_before_its_target():
    """DESIGN.md's worked example: with p=4, s4 (t=5) reads g2, which ends at s4; s5 must not leak into it."""
    cfg = debug_config("lst")
    model = build_model(cfg.model).eval()
    v = model.vocab
    row = [v.bos, v.speech_marker] + [v.speech_id(i) for i in range(6)] + [v.text_marker, 7, 8, v.eos]
    lengths = static_row_patch_lengths(row, v, 4)
    assert lengths == [1, 1, 4, 2, 1, 1, 1, 1]
    changed = list(row)
    changed[6] = v.speech_id(100)  # s5
    with torch.no_grad():
        a = model(torch.tensor([row]), pad_patch_lengths([lengths]))[0]
        b = model(torch.tensor([changed]), pad_patch_lengths([lengths]))[0]
    assert (a[:6] - b[:6]).abs().max() <= TOL
    assert (a[6:] - b[6:]).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_documents_in_a_packed_row_are_isolated(arch):
    """A document's logits equal whatever precedes it in the row (other content, other length)."""
    model = build_model(debug_config(arch).model).eval()
    vocab = model.vocab
    rng = random.Random(7)
    target_doc = random_document(vocab, rng, 4, start_with_speech=True, first_marker=False)
    rows, partitions, starts = [], [], []
    for n_before in (1, 2, 3):
        before = [vocab.bos]
        for _ in range(n_before):
            before += random_document(vocab, rng, rng.randint(1, 3))
        after = random_document(vocab, rng, 2)
        row = before + target_doc + after
        rows.append(row)
        starts.append(len(before))
        partitions.append(random_partition(before, vocab, rng, 5) + random_partition(target_doc, vocab, random.Random(3), 5)
                          + random_partition(after, vocab, rng, 5))
    width = max(map(len, rows))
    tokens = torch.tensor([row + [vocab.pad] * (width - len(row)) for row in rows])
    patch_lengths = pad_patch_lengths([p + [1] * (width - len(r)) for p, r in zip(partitions, rows)])
    with torch.no_grad():
        logits = model(tokens, patch_lengths)
    span = len(target_doc)
    first = logits[0, starts[0]: starts[0] + span]
    for row_index in (1, 2):
        other = logits[row_index, starts[row_index]: starts[row_index] + span]
        assert (first - other).abs().max().item() <= TOL


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_flex_block_masks_give_the_sdpa_logits(arch):
    """The CUDA attention path (FlexAttention block masks) applies the same rule as the dense masks (forward only:
    flex has no CPU backward)."""
    windows = ["model.encoder.window=5", "model.decoder.window=6"] if arch == "lst" else \
        ["model.global_transformer.window=7"]
    models = {}
    for attention in ("sdpa", "flex"):
        torch.manual_seed(0)
        models[attention] = build_model(debug_config(arch, f"model.attention={attention}", *windows).model).eval()
    vocab = models["sdpa"].vocab
    rng = random.Random(5)
    rows = [_row(vocab, rng, 48) for _ in range(2)]
    patch_lengths = pad_patch_lengths([random_partition(r, vocab, rng, 6) for r in rows])
    with torch.no_grad():
        dense, flex = (models[a](torch.tensor(rows), patch_lengths) for a in ("sdpa", "flex"))
    assert (dense - flex).abs().max().item() <= 1e-4
