"""Static patching of speech spans and the patch-partition checks."""

import random

import pytest
import torch

from lst_train.patching import check_patch_lengths, pad_patch_lengths, static_patch_lengths, static_row_patch_lengths
from lst_train.vocab import Vocab

from conftest import random_document

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
    lengths = static_row_patch_lengths(row, VOCAB, p)
    assert sum(lengths) == len(row) and lengths[0] == 1
    start = 0
    for n in lengths:
        patch = row[start: start + n]
        speech = [VOCAB.is_speech(torch.tensor(t)).item() for t in patch]
        assert n == 1 or all(speech), "a multi-token patch holds only speech"
        assert n <= p
        start += n


def test_multi_codebook_patches_hold_whole_frames():
    vocab = Vocab(text_size=50, speech_codebook_size=20, n_codebooks=2)
    frames = [tok for f in range(5) for tok in (vocab.speech_id(f, 0), vocab.speech_id(f, 1))]
    row = [vocab.bos, vocab.speech_marker] + frames + [vocab.eos]
    assert static_row_patch_lengths(row, vocab, 2) == [1, 1, 4, 4, 2, 1]


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
