"""Causality and document isolation of the LST (every patching) and the baseline.

The LST's causality is a property of the model and the patcher together: the partition is computed from the
tokens, so a test that perturbs the future must recompute it from the perturbed tokens, with the loader's patcher
code (helpers.static_partition -> lst_train.data.pieces.row_partition); a fixed partition hides the span-end leak.
"""

import random

import pytest
import torch

from lst_train.config import PatchingConfig
from lst_train.model import build_model
from lst_train.model.layout import PatchLayout
from lst_train.patching import pad_patch_lengths

from helpers import (debug_config, random_document, random_partition, random_stream, static_partition,
                     write_entropy_table)

TOL = 1e-5


def _row(vocab, rng, length):
    """<bos> then documents (some starting straight with speech, no marker) until `length`, then <pad>s."""
    row = [vocab.bos]
    while len(row) < length - 4:
        row += random_document(vocab, rng, rng.randint(1, 4), start_with_speech=rng.random() < 0.5,
                               first_marker=rng.random() < 0.7)
    return (row + [vocab.pad] * length)[:length]


def _perturbed_batch(row, vocab, rng):
    """Row t+... : a copy of `row` with every token after position t replaced by a random id."""
    copies = []
    for t in range(len(row)):
        tail = [rng.randrange(vocab.size) for _ in range(len(row) - t - 1)]
        copies.append(row[: t + 1] + tail)
    return torch.tensor(copies)


def _assert_causal(model, reference_row, rows, partition, tol=TOL) -> float:
    """rows[t] shares reference_row[: t+1] and has another future; each row is patched by `partition` from its own
    tokens. Asserts logits[:, :t+1] match the reference; returns the largest change at a later position."""
    with torch.no_grad():
        reference = model(torch.tensor([reference_row]), *partition([reference_row]))[0]
        logits = model(torch.tensor(rows), *partition(rows))
    for t in range(len(reference_row)):
        diff = (logits[t, : t + 1] - reference[: t + 1]).abs().max().item()
        assert diff <= tol, f"logits at <= {t} changed by {diff} when tokens after {t} changed"
    return max((logits[t, t + 1:] - reference[t + 1:]).abs().max().item() for t in range(len(reference_row) - 1))


def _futures(vocab, rng, row):
    """For each t, row[: t+1] continued by a fresh random stream (frames finished, spans ending anywhere)."""
    return [random_stream(vocab, rng, len(row), prefix=row[: t + 1]) for t in range(len(row))]


PATCHINGS = {
    "static": (lambda size, table: PatchingConfig(size=size), 0),
    "mixed-static": (lambda size, table: PatchingConfig(strategy="mixed", size=size, mixed_prob=0.0), 0),
    "curriculum-late": (lambda size, table: PatchingConfig(strategy="curriculum", size=size), 100),
    # max_len 5: entropy patches end by the table, by their length, and at span ends
    "entropy": (lambda size, table: PatchingConfig(strategy="entropy", size=size, max_len=5, entropy_table=table), 0),
}


@pytest.mark.parametrize("strategy,p,codebooks", [("static", p, c) for p in (1, 2, 3, 4) for c in (1, 2)]
                         + [("mixed-static", 4, 2), ("curriculum-late", 4, 2)]
                         + [("entropy", p, c) for p, c in ((2, 1), (3, 2), (4, 1))])
def test_lst_causal_with_the_partition_recomputed_from_the_future(strategy, p, codebooks, tmp_path):
    """Change every token after t AND re-patch the changed row as the loader would: logits up to t stay put."""
    cfg = debug_config("lst", f"model.vocab.n_codebooks={codebooks}", "model.encoder.window=5",
                       "model.decoder.window=6", f"model.unpool_window={1 if codebooks == 1 else 3}")
    model = build_model(cfg.model, seed=0).eval()
    vocab = model.vocab
    make, step = PATCHINGS[strategy]
    patching = make(size=p, table=write_entropy_table(tmp_path / "entropy.safetensors", vocab.speech_codebook_size))

    def partition(rows):
        return static_partition(rows, vocab, p, patching, step=step, total_steps=100)

    rng = random.Random(f"{strategy}-{p}-{codebooks}")
    for _ in range(2):
        row = random_stream(vocab, rng, 40)
        assert _assert_causal(model, row, _futures(vocab, rng, row), partition) > 1e-3, "the future must matter"


def test_the_span_end_leak_is_caught():
    """The same check fails with the old rule (every patch's last token reads its own patch): the decoder then
    learns that a speech span ends from a patch that exists only because the next token is not speech."""
    cfg = debug_config("lst")
    model = build_model(cfg.model, seed=0).eval()
    vocab = model.vocab

    def leaky_partition(rows):
        return static_partition(rows, vocab, 4)[0], None

    rng = random.Random(0)
    row = random_stream(vocab, rng, 40)
    with pytest.raises(AssertionError, match="changed by"):
        _assert_causal(model, row, _futures(vocab, rng, row), leaky_partition)


@pytest.mark.parametrize("unpool_window", [1, 3])
def test_lst_causal_for_any_fixed_ragged_partition(unpool_window):
    """Model-level: with a partition given (any cut of the speech runs), logits at t ignore tokens after t."""
    cfg = debug_config("lst", f"model.unpool_window={unpool_window}", "model.encoder.window=5",
                       "model.decoder.window=6")
    model = build_model(cfg.model).eval()
    vocab = model.vocab
    rng = random.Random(f"ragged-{unpool_window}")
    for _ in range(2):
        row = _row(vocab, rng, 40)
        lengths = random_partition(row, vocab, rng, max_len=7)
        perturbed = _perturbed_batch(row, vocab, rng)
        patch_lengths = pad_patch_lengths([lengths] * len(row))
        with torch.no_grad():
            reference = model(torch.tensor([row]), patch_lengths[:1])[0]
            logits = model(perturbed, patch_lengths)
        for t in range(len(row)):
            diff = (logits[t, : t + 1] - reference[: t + 1]).abs().max().item()
            assert diff <= TOL, f"logits at <= {t} changed by {diff} when tokens after {t} changed"
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


def _worked_example(v):
    return [v.bos, v.speech_marker] + [v.speech_id(i) for i in range(6)] + [v.text_marker, 7, 8, v.eos]


def test_worked_example_reads():
    """DESIGN.md §1, p=4: t=0→g0, t=1..4→g1, t=5,6→g2, t=7→g2 (not g3: [s5 s6] closed early), t=8→g4, t=9→g5,
    t=10→g6."""
    cfg = debug_config("lst")
    v = build_model(cfg.model).vocab
    row = _worked_example(v)
    lengths, early = static_partition([row], v, 4)
    layout = PatchLayout.build(torch.tensor([row]), lengths, v.eos, unpool_window=1, closed_early=early)
    assert layout.unpool_last.tolist()[:11] == [0, 1, 1, 1, 1, 2, 2, 2, 4, 5, 6]
    wide = PatchLayout.build(torch.tensor([row]), lengths, v.eos, unpool_window=3, closed_early=early)
    assert wide.unpool_first.tolist()[:11] == [0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 4]


def test_token_reads_global_state_of_patch_before_its_target():
    """DESIGN.md's worked example: with p=4, s4 (t=5) reads g2, which ends at s4; s5 must not leak into it."""
    cfg = debug_config("lst")
    model = build_model(cfg.model).eval()
    v = model.vocab
    row = _worked_example(v)
    changed = list(row)
    changed[6] = v.speech_id(100)  # s5
    with torch.no_grad():
        a = model(torch.tensor([row]), *static_partition([row], v, 4))[0]
        b = model(torch.tensor([changed]), *static_partition([changed], v, 4))[0]
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
