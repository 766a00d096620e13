"""Static patching of speech spans and the patch-partition checks."""

import random

import pytest
import torch

from lst_train.config import PatchingConfig
from lst_train.data.pieces import row_partition
from lst_train.data.patchers import Patcher
from lst_train.patching import check_patch_lengths, pad_patch_lengths, static_patch_lengths
from lst_train.vocab import Vocab

from helpers import random_document


def _static(row, vocab, p):
    return row_partition(row, vocab, Patcher(PatchingConfig(size=p), 1))

VOCAB = Vocab(text_size=50, speech_codebook_size=20, n_codebooks=1)


@pytest.mark.parametrize("n, p", [(0, 4), (1, 4), (4, 4), (9, 4), (7, 1), (5, 2)])
def test_static_patch_lengths_cover_the_span(n, p):
    lengths = static_patch_lengths(n, p)
    assert sum(lengths) == n and all(1 <= x <= p for x in lengths)
    assert all(x == p for x in lengths[:-1])


@pytest.mark.parametrize("p", [1, 2, 4])
def test_row_patching_keeps_text_and_specials_single(p):
    rng = random.Random(p)
    row = [VOCAB.bos] + random_document(VOCAB, rng, 6) + random_document(VOCAB, rng, 3)
    lengths, early = _static(row, VOCAB, p)
    assert sum(lengths) == len(row) and lengths[0] == 1 and len(early) == len(lengths)
    start = 0
    for n, closed_early in zip(lengths, early):
        patch = row[start: start + n]
        speech = [VOCAB.is_speech(torch.tensor(t)).item() for t in patch]
        assert n == 1 or all(speech), "a multi-token patch holds only speech"
        assert n <= p
        # Closed early exactly when a speech patch is short: the token after it (not speech) ended it.
        assert closed_early == (all(speech) and n < p)
        start += n


def test_worked_example_partition():
    """DESIGN.md §1: `<bos> <s> s1..s6 <t> w1 w2 <eos>`, p=4: [s5 s6] closed early (the next token is <t>)."""
    v = VOCAB
    row = [v.bos, v.speech_marker] + [v.speech_id(i) for i in range(6)] + [v.text_marker, 7, 8, v.eos]
    assert _static(row, v, 4) == ([1, 1, 4, 2, 1, 1, 1, 1], [False, False, False, True, False, False, False, False])
    # A span ending on the grid closes by itself; a row ending inside a patch leaves it open (closed early).
    assert _static(row[:6] + [v.eos], v, 4) == ([1, 1, 4, 1], [False] * 4)
    assert _static(row[:7], v, 4) == ([1, 1, 4, 1], [False, False, False, True])


def test_multi_codebook_patches_hold_whole_frames():
    vocab = Vocab(text_size=50, speech_codebook_size=20, n_codebooks=2)
    frames = [tok for f in range(5) for tok in (vocab.speech_id(f, 0), vocab.speech_id(f, 1))]
    row = [vocab.bos, vocab.speech_marker] + frames + [vocab.eos]
    assert _static(row, vocab, 2) == ([1, 1, 4, 4, 2, 1], [False, False, False, False, True, False])
    # An unfinished last frame (a row cut mid-frame) joins the last patch, which is then open.
    assert _static(row[:-4], vocab, 2) == ([1, 1, 4, 3], [False, False, False, True])


def test_check_patch_lengths():
    good = pad_patch_lengths([[1, 3, 2], [1, 5]])
    check_patch_lengths(good, 6)
    with pytest.raises(ValueError, match="sum"):
        check_patch_lengths(good, 7)
    with pytest.raises(ValueError, match="right padding"):
        check_patch_lengths(torch.tensor([[1, 0, 5]]), 6)
    with pytest.raises(ValueError, match="negative"):
        check_patch_lengths(torch.tensor([[7, -1]]), 6)


def test_vocab_layout():
    v = Vocab(text_size=10, speech_codebook_size=4, n_codebooks=2)
    assert v.speech_id(0, 0) == 10 and v.speech_id(3, 1) == 17
    assert [v.bos, v.eos, v.pad, v.text_marker, v.speech_marker] == [18, 19, 20, 21, 22] and v.size == 23
    assert v.special_name(v.eos) == "<eos>" and v.special_name(3) is None
    ids = torch.tensor([9, 10, 17, 18])
    assert v.is_speech(ids).tolist() == [False, True, True, False]
    with pytest.raises(ValueError):
        v.speech_id(4, 0)
