"""data.shuffle_buffer: documents drawn at random from a buffer, none lost or doubled, and exactly resumable."""

import io
import logging

import pytest
import torch

from lst_train.config import ConfigError, load_config
from lst_train.data.dataset import resolve_shards
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.shuffle_buffer import ShuffleBuffer
from lst_train.data.skips import SkipCounter, SkipSample, SourceExhausted
from lst_train.data.source_reader import SourceReader
from lst_train.data.speech_text import SpeechTextTokenizer

from helpers import RECIPES
from helpers.data import reader_stream, recipe_loader, units_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return units_corpus(tmp_path_factory.mktemp("corpus"), n_speech_shards=4, samples_per_shard=8)


def _config(corpus, *extra):
    return load_config(RECIPES / "debug_cpu.yaml", [
        f"data.tokenizer={corpus['tokenizer']}", "data.seq_units=48", "data.batch_size=2", "data.codec.kind=units",
        f"data.sources=[{{kind: speech, path: '{corpus['speech']}', weight: 1.0}}, "
        f"{{kind: text, path: '{corpus['text']}', weight: 1.0}}]", "training.steps=6", "training.warmup_steps=1",
        *extra])


def _one_epoch(cfg, index: int, shuffle: int) -> list[str]:
    """Identities of one pass over source `index` (one reader), through a shuffle buffer of `shuffle` if > 0."""
    spec = LoaderSpec.from_recipe(cfg)
    skips = SkipCounter()
    reader = SourceReader(cfg.data.sources[index], index, resolve_shards(spec)[index], 0, 1, cfg.data,
                          SpeechTextTokenizer.from_config(cfg.data, spec.vocab()), skips, max_epochs=1)
    source = ShuffleBuffer(reader, shuffle, "seed") if shuffle else reader
    identities = []
    while True:
        try:
            identities.append(source.next_item()[0])
        except SkipSample:
            continue
        except SourceExhausted:
            return identities


@pytest.mark.parametrize("index", [0, 1])
def test_a_pass_through_the_buffer_is_a_permutation_of_the_shard_order(corpus, index):
    cfg = _config(corpus)
    ordered = _one_epoch(cfg, index, 0)
    shuffled = _one_epoch(cfg, index, 5)
    assert len(ordered) >= 30 and sorted(shuffled) == sorted(ordered)  # nothing lost, nothing doubled
    assert shuffled != ordered
    # A buffer of 5 draws each document from among the 5 next ones: none leaves more than 4 places early.
    position = {identity: i for i, identity in enumerate(ordered)}
    assert all(position[identity] <= i + 4 for i, identity in enumerate(shuffled))
    assert _one_epoch(cfg, index, 5) == shuffled  # the same seed, the same order


@pytest.mark.parametrize("workers", [0, 2])
def test_a_restored_loader_with_a_shuffle_buffer_continues_exactly(corpus, workers):
    cfg = _config(corpus, "data.shuffle_buffer=6", f"data.num_workers={workers}")
    loader = recipe_loader(cfg, rank=1, world_size=2)
    stream = iter(loader)
    [next(stream) for _ in range(5)]
    buffer = io.BytesIO()
    torch.save(loader.state_dict(), buffer)  # the buffered documents travel in the checkpoint, read back as it is
    expected = [next(stream) for _ in range(7)]
    resumed = recipe_loader(cfg, rank=1, world_size=2)
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    resumed_stream = iter(resumed)
    got = [next(resumed_stream) for _ in range(7)]
    for a, b in zip(expected, got):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.patch_lengths, b.patch_lengths)
    in_shard_order = recipe_loader(_config(corpus, f"data.num_workers={workers}"), rank=1, world_size=2)
    assert not torch.equal(next(iter(in_shard_order)).tokens, next(iter(recipe_loader(cfg, 1, 2))).tokens)


def test_turning_the_buffer_on_or_off_at_a_resume_loads_and_says_what_it_drops(corpus, caplog):
    plain, buffered = _config(corpus), _config(corpus, "data.shuffle_buffer=6")
    for before, after in ((plain, buffered), (buffered, plain)):
        stream = reader_stream(before)
        for _ in range(3):
            stream.next_batch()
        state = stream.state_dict()
        resumed = reader_stream(after)
        with caplog.at_level(logging.WARNING):
            resumed.load_state_dict(state)
        resumed.next_batch()
    held = [len(source["buffer"]) for source in state["sources"]]
    assert held[0] > 0 and all(f"data.shuffle_buffer is now 0: the {n} documents the checkpoint's shuffle buffer "
                               "held are not read" in caplog.text for n in held if n)


def test_a_negative_buffer_is_a_config_error(corpus):
    with pytest.raises(ConfigError, match=r"^data\.shuffle_buffer: must be >= 0 \(0 = shard order\), got -1$"):
        _config(corpus, "data.shuffle_buffer=-1")


def test_a_buffered_state_resumes_on_another_number_of_readers(corpus):
    """Two readers' state given to one (the number of ranks changed): each source restarts its epoch with an empty
    buffer and the stream goes on."""
    cfg = _config(corpus, "data.shuffle_buffer=6")
    stream = reader_stream(cfg, reader=1, n_readers=2)
    for _ in range(3):
        stream.next_batch()
    state = stream.state_dict()
    assert any(source["buffer"] for source in state["sources"])
    alone = reader_stream(cfg)
    alone.load_state_dict(state)
    assert all(not source.buffer for source in alone.sources)
    assert [source.epoch for source in alone.sources] == [s["reader"]["cursor"]["epoch"] for s in state["sources"]]
    assert alone.next_batch().tokens.shape[0] == cfg.data.batch_size
