"""Patchers, interleaving and packing: partitions are exact, budgets hold, markers and frames line up."""

import random

import numpy as np
import pytest

from lst_train.config import PatchingConfig
from lst_train.config.data import InterleaveConfig
from lst_train.data.collation import BatchCollator, collate_rows
from lst_train.data.documents import interleaved_document, speech_document
from lst_train.data.packing import RowPacker
from lst_train.data.patchers import KIND_SILENCE, KIND_WORD, Patcher, aligned_patch_frames
from lst_train.data.pieces import render
from lst_train.data.text_tokenizer import TextTokenizer
from lst_train.data.utterances import Utterance
from lst_train.loss import IGNORE_INDEX
from lst_train.patching import check_patch_lengths
from lst_train.vocab import Vocab

from helpers import debug_config
from helpers.data import write_tokenizer

VOCAB = Vocab(text_size=300, speech_codebook_size=64, n_codebooks=1)


def _utterance(rng, n_words=12, n_codebooks=1):
    t, word_frames = rng.randint(0, 3), []
    for _ in range(n_words):
        length = rng.randint(0, 7)  # zero-frame words happen at 12.5 Hz
        word_frames.append((t, t + length))
        t += length + rng.choice([0, 0, 1, 3])
    n_frames = t + rng.randint(0, 4)
    frames = np.array([[rng.randrange(64) for _ in range(n_codebooks)] for _ in range(n_frames)])
    return Utterance("u", frames, 12.5, [f"w{i}" for i in range(n_words)], word_frames)


@pytest.mark.parametrize("silence", ["separate", "merged"])
def test_aligned_patches_partition_the_span_on_word_boundaries(silence):
    rng = random.Random(silence)
    for _ in range(200):
        utt = _utterance(rng)
        n = len(utt.frames)
        patches = aligned_patch_frames(n, utt.word_frames, silence, max_len=5)
        assert sum(length for length, _ in patches) == n
        assert all(1 <= length <= 5 for length, _ in patches)
        edges = set(np.cumsum([0] + [length for length, _ in patches]).tolist())
        for start, end in utt.word_frames:
            if end > start:
                assert end in edges, "every word ends on a patch boundary"
                if silence == "separate":
                    assert start in edges, "with separate silences every word also starts on one"
        kinds = [kind for _, kind in patches]
        if silence == "merged" and KIND_SILENCE in kinds:
            first = kinds.index(KIND_SILENCE)
            assert set(kinds[first:]) == {KIND_SILENCE}, "merged: only the frames after the last word stay silence"


def test_aligned_patches_of_a_known_span():
    words = [(2, 6), (6, 8), (11, 12)]
    assert aligned_patch_frames(14, words, "separate", 16) == [
        (2, KIND_SILENCE), (4, KIND_WORD), (2, KIND_WORD), (3, KIND_SILENCE), (1, KIND_WORD), (2, KIND_SILENCE)]
    assert aligned_patch_frames(14, words, "merged", 16) == [
        (6, KIND_WORD), (2, KIND_WORD), (4, KIND_WORD), (2, KIND_SILENCE)]
    assert aligned_patch_frames(14, words, "merged", 4) == [
        (4, KIND_WORD), (2, KIND_WORD), (2, KIND_WORD), (4, KIND_WORD), (2, KIND_SILENCE)]


def test_curriculum_probability_at_chosen_steps():
    patcher = Patcher(PatchingConfig(strategy="curriculum", curriculum_start=0.25, curriculum_end=0.75), 1000)
    assert [patcher.aligned_probability(s) for s in (0, 250, 500, 625, 750, 999)] == \
        pytest.approx([1.0, 1.0, 0.5, 0.25, 0.0, 0.0])
    assert Patcher(PatchingConfig(strategy="mixed", mixed_prob=0.3), 10).aligned_probability(7) == 0.3
    assert Patcher(PatchingConfig(strategy="static"), 10).aligned_probability(0) == 0.0


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return TextTokenizer.from_file(write_tokenizer(tmp_path_factory.mktemp("tok") / "t.tiktoken"))


def test_interleaving_alternates_markers_and_maps_words_to_frames(tokenizer):
    rng = random.Random(0)
    for seed in range(30):
        utt = _utterance(rng, n_words=40)
        doc = interleaved_document(utt, tokenizer, VOCAB, InterleaveConfig(3, 8, 0.5), random.Random(seed))
        speech_frames = sum(len(s.tokens) for s in doc.spans if s.speech)
        assert speech_frames <= len(utt.frames)
        for a, b in zip(doc.spans, doc.spans[1:]):
            assert not (a.speech and b.speech), "speech spans are separated by text spans"
        text = " ".join(tokenizer.decode(s.tokens) for s in doc.spans if not s.speech)
        for span in doc.spans:
            if span.speech:
                assert all(0 <= s <= e <= len(span.tokens) for s, e in span.word_frames)
                assert all(VOCAB.speech_start <= t < VOCAB.speech_end for t in span.tokens)
        words_in_text = text.split()
        assert set(words_in_text) <= set(utt.words)
        piece = render(doc, VOCAB, Patcher(PatchingConfig(size=4), 10), aligned=False)
        markers = [t for t in piece.tokens if t in (VOCAB.text_marker, VOCAB.speech_marker)]
        assert len(markers) == len(doc.spans) and piece.tokens[-1] == VOCAB.eos


def test_interleaving_is_resampled_per_seed_and_replayed_per_seed(tokenizer):
    utt = _utterance(random.Random(1), n_words=40)
    cfg = InterleaveConfig(3, 8, 0.5)
    a = interleaved_document(utt, tokenizer, VOCAB, cfg, random.Random("epoch0"))
    b = interleaved_document(utt, tokenizer, VOCAB, cfg, random.Random("epoch0"))
    c = interleaved_document(utt, tokenizer, VOCAB, cfg, random.Random("epoch1"))
    assert a == b and a != c


def test_speech_span_words_follow_the_audio():
    utt = _utterance(random.Random(2), n_words=5, n_codebooks=2)
    vocab = Vocab(text_size=300, speech_codebook_size=64, n_codebooks=2)
    doc = speech_document(utt, vocab)
    tokens = doc.spans[0].tokens
    assert len(tokens) == 2 * len(utt.frames)
    assert tokens[0] == vocab.speech_id(int(utt.frames[0, 0]), 0)
    assert tokens[1] == vocab.speech_id(int(utt.frames[0, 1]), 1)
    piece = render(doc, vocab, Patcher(PatchingConfig(strategy="aligned"), 10), aligned=True)
    assert all(n % 2 == 0 for n, k in zip(piece.patch_lengths, piece.patch_kinds) if k in (KIND_WORD, KIND_SILENCE))


@pytest.mark.parametrize("arch_patcher", [None, "static", "aligned"])
def test_packing_fills_the_unit_budget_and_never_splits_a_patch(arch_patcher, tokenizer):
    rng = random.Random(3)
    patcher = None if arch_patcher is None else Patcher(PatchingConfig(strategy=arch_patcher, size=3), 10)
    pieces = [render(interleaved_document(_utterance(rng, 30), tokenizer, VOCAB, InterleaveConfig(2, 6, 0.5),
                                          random.Random(i)), VOCAB, patcher, aligned=arch_patcher == "aligned")
              for i in range(20)]
    stream = iter(pieces)
    packer = RowPacker(units=40, vocab=VOCAB)
    rows = [packer.next_row(lambda: next(stream)) for _ in range(6)]
    all_patches = [p for piece in pieces for p in zip(piece.patch_lengths, piece.patch_kinds)]
    packed = [p for row in rows for p in list(zip(row.patch_lengths, row.patch_kinds))[1:]]  # minus <bos>
    assert packed == all_patches[: len(packed)], "rows hold the documents' patches, in order, none split"
    packed_tokens = [t for row in rows for t in row.tokens[1:]]
    assert packed_tokens == [t for piece in pieces for t in piece.tokens][: len(packed_tokens)]
    batch = collate_rows(rows, VOCAB, pad_to_multiple=16)
    assert (batch.row_stats["patches"] == 40).all()
    assert batch.tokens.shape[1] % 16 == 0
    check_patch_lengths(batch.patch_lengths, batch.tokens.shape[1])
    assert (batch.tokens[:, 0] == VOCAB.bos).all()
    pad = batch.tokens == VOCAB.pad
    assert (batch.labels[:, :-1][pad[:, 1:]] == IGNORE_INDEX).all()
    eos = batch.tokens == VOCAB.eos
    assert (batch.labels[eos] == IGNORE_INDEX).all()
    if arch_patcher is None:
        assert (batch.patch_lengths[:, :40] == 1).all()


def test_packer_state_resumes_mid_document(tokenizer):
    rng = random.Random(4)
    pieces = [render(interleaved_document(_utterance(rng, 30), tokenizer, VOCAB, InterleaveConfig(), random.Random(i)),
                     VOCAB, Patcher(PatchingConfig(), 10), False) for i in range(10)]
    a_stream, b_stream = iter(pieces), iter(pieces)
    packer = RowPacker(units=32, vocab=VOCAB)
    packer.next_row(lambda: next(a_stream))
    state = packer.state_dict()
    consumed = pieces.index(packer.pending) + 1
    expected = packer.next_row(lambda: next(a_stream))
    for _ in range(consumed):
        next(b_stream)
    resumed = RowPacker(units=32, vocab=VOCAB)
    resumed.load_state_dict(state)
    assert resumed.next_row(lambda: next(b_stream)) == expected
    # A state saved before task sequences: its pending document has no prompt flags and no `whole`.
    for key in ("patch_prompt", "whole"):
        del state["pending"][key]
    older = RowPacker(units=32, vocab=VOCAB)
    older.load_state_dict(state)
    c_stream = iter(pieces[consumed:])
    assert older.next_row(lambda: next(c_stream)) == expected


def test_the_token_cap_bounds_rows_without_losing_a_token(tokenizer):
    """data.max_row_tokens: a row stops before the patch that would pass the cap (counted), and that patch opens the
    next row: the rows still hold every document's tokens, in order."""
    rng = random.Random(5)
    pieces = [render(speech_document(_utterance(rng, 30), VOCAB), VOCAB, Patcher(PatchingConfig(size=3), 10), False)
              for _ in range(12)]
    stream = iter(pieces)
    packer = RowPacker(units=40, vocab=VOCAB, max_tokens=70)
    rows = [packer.next_row(lambda: next(stream)) for _ in range(8)]
    assert all(len(row.tokens) <= 70 for row in rows)
    assert any(row.capped for row in rows) and all(row.capped == (len(row.patch_lengths) < 40) for row in rows)
    packed_tokens = [t for row in rows for t in row.tokens[1:]]
    assert packed_tokens == [t for piece in pieces for t in piece.tokens][: len(packed_tokens)]
    batch = collate_rows(rows, VOCAB, pad_to_multiple=16)
    assert batch.row_stats["capped_rows"].tolist() == [int(row.capped) for row in rows]


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_batch_flops_are_the_rows_own_whatever_the_padding(arch, tokenizer):
    """The compute budget counts each row's real positions: a row costs the same padded to the batch's width as
    alone, so the LST (rows of unequal length) pays nothing for the collator's padding."""
    rng = random.Random(6)
    patcher = Patcher(PatchingConfig(strategy="static", size=3), 10) if arch == "lst" else None
    pieces = [render(interleaved_document(_utterance(rng, 30), tokenizer, VOCAB, InterleaveConfig(2, 6, 0.5),
                                          random.Random(i)), VOCAB, patcher, aligned=False) for i in range(20)]
    stream = iter(pieces)
    packer = RowPacker(units=40, vocab=VOCAB)
    rows = [packer.next_row(lambda: next(stream)) for _ in range(4)]
    model = debug_config(arch, f"model.vocab.text_size={VOCAB.text_size}",
                         f"model.vocab.speech_codebook_size={VOCAB.speech_codebook_size}").model
    padded = BatchCollator(model, VOCAB, pad_to_multiple=64, n_sources=0).collate(rows)
    alone = [BatchCollator(model, VOCAB, pad_to_multiple=1, n_sources=0).collate([row]) for row in rows]
    assert (padded.tokens == VOCAB.pad).any() and all((b.tokens != VOCAB.pad).all() for b in alone)
    assert padded.flops == sum(b.flops for b in alone)
    if arch == "lst":
        assert len({len(row.tokens) for row in rows}) > 1, "rows of unequal length, as the LST's are"
