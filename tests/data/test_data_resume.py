"""A restored loader yields exactly the batches the uninterrupted one would have (0 and 2 workers, two ranks)."""

import io
import shutil

import pytest
import torch

from lst_train.config import load_config

from helpers import RECIPES
from helpers.data import reader_stream, recipe_loader, units_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return units_corpus(tmp_path_factory.mktemp("corpus"), n_speech_shards=4, samples_per_shard=8)


def _config(corpus, workers, *extra):
    return load_config(RECIPES / "debug_cpu.yaml", [
        f"data.tokenizer={corpus['tokenizer']}", "data.seq_units=48", "data.batch_size=2",
        f"data.num_workers={workers}", "data.codec.kind=units", "patching.strategy=curriculum", "training.steps=6",
        "training.warmup_steps=1",
        *extra,
    ]), corpus


def _with_sources(cfg, corpus):
    from lst_train.config.data import SourceConfig

    cfg.data.sources = [SourceConfig(kind="speech", path=corpus["speech"], weight=1.0),
                        SourceConfig(kind="speech", path=corpus["speech"], weight=0.5, sequence="speech"),
                        SourceConfig(kind="text", path=corpus["text"], weight=2.0)]
    return cfg


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _same(a, b):
    return all(torch.equal(getattr(x, k), getattr(y, k)) for x, y in zip(a, b)
               for k in ("tokens", "patch_lengths", "closed_early", "labels"))


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("rank", [0, 1])
def test_restored_loader_continues_exactly(corpus, workers, rank):
    cfg = _with_sources(_config(corpus, workers)[0], corpus)
    loader = recipe_loader(cfg, rank=rank, world_size=2)
    stream = iter(loader)
    _take(stream, 5)
    state = loader.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # the state must survive a checkpoint file
    expected = _take(stream, 7)

    resumed = recipe_loader(cfg, rank=rank, world_size=2)
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    got = _take(iter(resumed), 7)
    assert _same(expected, got)
    # Curriculum: the step travels with the state.
    assert [b.loader["step"] for b in got] == [b.loader["step"] for b in expected]


def test_ranks_read_different_data(corpus):
    cfg = _with_sources(_config(corpus, 0)[0], corpus)
    first = [_take(iter(recipe_loader(cfg, rank=r, world_size=2)), 3) for r in (0, 1)]
    assert not _same(first[0], first[1])
    again = _take(iter(recipe_loader(cfg, rank=0, world_size=2)), 3)
    assert _same(first[0], again), "the same rank and seed must give the same batches"


def test_a_changed_shard_list_is_reported_and_its_epoch_restarted_not_shifted(tmp_path, caplog):
    corpus = units_corpus(tmp_path / "corpus", n_speech_shards=4, samples_per_shard=8)
    cfg, _ = _config(corpus, 0, f"data.sources[0].path={corpus['speech']}", f"data.sources[1].path={corpus['text']}")
    stream = reader_stream(cfg)
    for _ in range(3):
        stream.next_batch()
    state = stream.state_dict()
    speech = tmp_path / "corpus" / "speech"
    shutil.copy(speech / "shard-000.tar", speech / "shard-004.tar")  # a shard added, another gone
    (speech / "shard-001.tar").unlink()
    resumed = reader_stream(cfg)
    with caplog.at_level("WARNING", logger="lst_train.data"):
        resumed.load_state_dict(state)
    message = next(r.getMessage() for r in caplog.records if "shard list changed" in r.getMessage())
    assert "1 added: " in message and "shard-004.tar" in message and "1 removed: " in message
    assert "shard-001.tar" in message and "restarts epoch 0" in message
    cursor, text = resumed.sources[0].cursor, resumed.sources[1].cursor
    assert (cursor.shard_pos, cursor.record_pos) == (0, 0)
    assert (text.shard_pos, text.record_pos) == tuple(state["sources"][1]["cursor"][k] for k in
                                                       ("shard_pos", "record_pos"))  # unchanged source: exact
    assert resumed.next_batch().tokens.shape[0] == 2


def test_another_readers_state_restarts_the_epochs_with_nothing_pending(corpus):
    cfg, _ = _config(corpus, 0, f"data.sources[0].path={corpus['speech']}", f"data.sources[1].path={corpus['text']}")
    old = reader_stream(cfg, reader=1, n_readers=2)
    for _ in range(3):
        old.next_batch()
    state = old.state_dict()
    new = reader_stream(cfg, reader=0, n_readers=1)  # the job came back on one rank
    new.load_state_dict(state)
    assert [(s.cursor.epoch, s.cursor.shard_pos, s.cursor.record_pos) for s in new.sources] == [
        (src["cursor"]["epoch"], 0, 0) for src in state["sources"]]
    assert new.packer.pending is None and not any(s.prepared for s in new.sources)
    assert new.collator.batches == 3 and new.mixture.source_tokens == old.mixture.source_tokens
    assert new.next_batch().loader["step"] == 3  # the clock (curriculum, step) continues
