"""ASR / TTS sequences: an utterance's speech and its transcript, one as prompt, the other as the trained answer."""

import itertools
import random

import numpy as np
import pytest

from lst_train.config import ConfigError, PatchingConfig, load_config
from lst_train.data.collation import collate_rows
from lst_train.data.documents import task_document
from lst_train.data.packing import RowPacker
from lst_train.data.patchers import Patcher
from lst_train.data.skips import NoUsableData
from lst_train.data.stats import LoaderStats
from lst_train.data.pieces import render
from lst_train.data.text_tokenizer import TextTokenizer
from lst_train.data.utterances import Utterance
from lst_train.loss import IGNORE_INDEX
from lst_train.vocab import Vocab

from helpers import RECIPES
from helpers.data import recipe_loader, units_corpus, write_tokenizer

VOCAB = Vocab(text_size=300, speech_codebook_size=64, n_codebooks=2)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return TextTokenizer.from_file(write_tokenizer(tmp_path_factory.mktemp("tok") / "t.tiktoken"))


def _utterance(rng: random.Random, key: str = "u") -> Utterance:
    n_words = rng.randint(2, 6)
    word_frames = [(3 * i, 3 * i + 2) for i in range(n_words)]
    frames = np.array([[rng.randrange(64), rng.randrange(64)] for _ in range(3 * n_words + 1)])
    return Utterance(key, frames, 12.5, [rng.choice(["the", "cat", "sat", "mat"]) for _ in range(n_words)],
                     word_frames)


def _targets(tokens: list[int], labels: list[int]) -> list[int]:
    """The tokens that are some position's label (labels[t] predicts token t+1)."""
    return [tokens[t + 1] for t in range(len(tokens) - 1) if labels[t] != IGNORE_INDEX]


@pytest.mark.parametrize("task", ["asr", "tts"])
@pytest.mark.parametrize("patcher", [None, Patcher(PatchingConfig(size=3), 10)], ids=["baseline", "lst"])
def test_only_the_answer_and_its_eos_are_targets(tokenizer, task, patcher):
    utt = _utterance(random.Random(task))
    text = tokenizer.encode(" ".join(utt.words))
    speech = VOCAB.speech_ids(utt.frames)
    document = task_document(utt, tokenizer, VOCAB, task, prompt_loss=False)
    row = render(document, VOCAB, patcher, aligned=False)
    if task == "asr":
        assert row.tokens == [VOCAB.speech_marker, *speech, VOCAB.text_marker, *text, VOCAB.eos]
        answer = text
    else:
        assert row.tokens == [VOCAB.text_marker, *text, VOCAB.speech_marker, *speech, VOCAB.eos]
        answer = speech
    # <bos>, the document, then the start of a second copy (its cue and first prompt patch): only the answer counts.
    packer = RowPacker(1 + len(row.patch_lengths) + 2, VOCAB)
    batch = collate_rows([packer.next_row(iter([row, row]).__next__)], VOCAB, pad_to_multiple=8)
    tokens, labels = batch.tokens[0].tolist(), batch.labels[0].tolist()
    assert _targets(tokens, labels) == [*answer, VOCAB.eos]
    assert batch.row_stats["target_tokens"].tolist() == [len(answer) + 1], "the loader stats count the targets"
    first_answer = tokens.index(VOCAB.text_marker if task == "asr" else VOCAB.speech_marker)
    assert all(label == IGNORE_INDEX for label in labels[:first_answer]), "neither the prompt nor the cue is a target"

    trained = render(task_document(utt, tokenizer, VOCAB, task, prompt_loss=True), VOCAB, patcher, False)
    assert trained.tokens == row.tokens and not any(trained.patch_prompt)
    whole = collate_rows([trained], VOCAB, pad_to_multiple=1)
    assert _targets(trained.tokens, whole.labels[0].tolist()) == trained.tokens[1:], "prompt_loss trains on all"


def test_task_documents_are_never_split_and_resume_exactly(tokenizer):
    rng = random.Random(1)
    patcher = Patcher(PatchingConfig(size=3), 10)
    pieces = [render(task_document(_utterance(rng, str(i)), tokenizer, VOCAB, rng.choice(["asr", "tts"]), False),
                     VOCAB, patcher, False) for i in range(16)]
    assert max(len(piece.patch_lengths) for piece in pieces) < 40
    stream = iter(pieces)
    packer = RowPacker(units=40, vocab=VOCAB)
    rows = [packer.next_row(lambda: next(stream)) for _ in range(6)]
    packed = [t for row in rows for t in row.tokens[1:]]  # minus each row's <bos>: nothing lost, nothing reordered
    assert packed == [t for piece in pieces for t in piece.tokens][: len(packed)]
    flags = [flag for row in rows for flag in row.prompt_tokens()[1:]]
    assert flags == [flag for piece in pieces for flag in piece.prompt_tokens()][: len(flags)]
    for row in rows:  # every document in a row is all there: its marker first, its <eos> last
        assert row.tokens[1] in (VOCAB.speech_marker, VOCAB.text_marker) and row.tokens[-1] == VOCAB.eos
        assert len(row.patch_lengths) <= 40 and row.short == (len(row.patch_lengths) < 40)
    assert any(row.short for row in rows)

    state = packer.state_dict()
    rest = iter(pieces[pieces.index(packer.pending) + 1:])
    expected = [packer.next_row(lambda: next(stream)) for _ in range(2)]
    resumed = RowPacker(units=40, vocab=VOCAB)
    resumed.load_state_dict(state)
    assert [resumed.next_row(lambda: next(rest)) for _ in range(2)] == expected


def test_the_loader_builds_task_rows_from_a_speech_source(tmp_path):
    corpus = units_corpus(tmp_path)
    cfg = load_config(RECIPES / "debug_cpu.yaml", [
        f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", "data.batch_size=2", "data.seq_units=512"])
    cfg.data.sources[0].path, cfg.data.sources[0].sequence = corpus["speech"], "asr"
    cfg.data.sources[1].path = corpus["text"]
    vocab = Vocab.from_config(cfg.model.vocab)
    speech_tokens = 0
    for batch in itertools.islice(recipe_loader(cfg), 8):
        targets = batch.labels[:, :-1] != IGNORE_INDEX
        assert not (targets & vocab.is_speech(batch.tokens[:, 1:])).any(), "an ASR-only mixture trains no speech"
        speech_tokens += int(vocab.is_speech(batch.tokens).sum())
    assert speech_tokens > 0, "the speech source was read"


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_task_documents_over_a_row_are_skipped_and_counted_alike_for_every_family(tmp_path, arch):
    corpus = units_corpus(tmp_path, n_speech_shards=1, samples_per_shard=12)
    cfg = load_config(RECIPES / ("debug_cpu.yaml" if arch == "lst" else "debug_cpu_baseline.yaml"), [
        f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", "data.batch_size=2", "data.seq_units=300"])
    cfg.data.sources = cfg.data.sources[:1]
    cfg.data.sources[0].path, cfg.data.sources[0].sequence = corpus["speech"], "asr"
    vocab = Vocab.from_config(cfg.model.vocab)
    stats = LoaderStats()
    for batch in itertools.islice(recipe_loader(cfg), 12):
        stats.update(batch)
        for row, row_keys in zip(batch.tokens.tolist(), batch.keys):
            real = [t for t in row if t != vocab.pad]
            assert real.count(vocab.speech_marker) == real.count(vocab.eos) == len(row_keys), "whole documents"
    summary = stats.summary()
    assert summary["skipped"]["too_long_for_row"] > 0 and summary["short_rows"] > 0
    cfg.data.seq_units = 16  # no document fits: the run stops with the counts instead of reading forever
    with pytest.raises(NoUsableData, match=r"no document of source 0 .* fits a row in a whole pass.*too_long_for_row"):
        next(iter(recipe_loader(cfg)))


def test_whether_a_task_document_fits_depends_on_its_tokens_not_the_family(tokenizer):
    document = task_document(_utterance(random.Random(5)), tokenizer, VOCAB, "asr", False)
    lst = render(document, VOCAB, Patcher(PatchingConfig(size=4), 10), False)
    baseline = render(document, VOCAB, None, False)
    units = len(lst.tokens)  # the LST's patches would fit; the baseline's tokens would not
    assert len(lst.patch_lengths) + 1 <= units
    assert not RowPacker(units, VOCAB).fits_a_row(lst) and not RowPacker(units, VOCAB).fits_a_row(baseline)
    assert RowPacker(units + 1, VOCAB).fits_a_row(lst) and RowPacker(units + 1, VOCAB).fits_a_row(baseline)


@pytest.mark.parametrize("overrides, line", [
    (["data.sources[0].prompt_loss=true"], r"^data\.sources\[0\]\.prompt_loss: applies to \('asr', 'tts'\)"),
    (["data.sources[1].sequence=asr"], r"^data\.sources\[1\]\.sequence: must be one of \('text',\)"),
])
def test_task_settings_that_cannot_apply_fail_at_start_up(overrides, line):
    with pytest.raises(ConfigError, match=line):
        load_config(RECIPES / "debug_cpu.yaml", overrides)
