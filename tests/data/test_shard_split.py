"""Sources with fewer shards than readers: every reader opens every shard, and the readers split its records."""

import collections
import random

import pytest

from lst_train.data.shards import ShardCursor, list_shards
from lst_train.data.skips import NoUsableData, SkipCounter

from helpers.data import text_lines, units_corpus, write_jsonl


def _epoch_reads(shards, kind, n_readers, epochs, seed="0|0"):
    """{epoch: Counter of record keys} over all readers, each reading `epochs` whole passes."""
    reads = collections.defaultdict(collections.Counter)
    for reader in range(n_readers):
        cursor = ShardCursor(shards, kind, reader, n_readers, seed, SkipCounter())
        while True:
            record = cursor.next_record()
            if cursor.epoch >= epochs:
                break
            cursor.mark_used()
            reads[cursor.epoch][record.key] += 1
    return reads


@pytest.mark.parametrize("n_shards,n_readers", [(2, 4), (3, 8), (1, 3)])
def test_readers_split_every_epoch_exactly(tmp_path, n_shards, n_readers):
    paths = units_corpus(tmp_path, n_speech_shards=n_shards, samples_per_shard=8, n_text_shards=0)
    shards = list_shards(paths["speech"])
    every = {f"{path}:{i:03d}-{j:04d}" for i, path in enumerate(shards) for j in range(8)}
    for seed in ("0|0", "1|2"):
        reads = _epoch_reads(shards, "speech", n_readers, epochs=3, seed=seed)
        for epoch in range(3):
            assert set(reads[epoch]) == every, (seed, epoch)
            assert max(reads[epoch].values()) == 1, (seed, epoch)


def test_a_source_with_fewer_records_than_readers_feeds_every_reader(tmp_path):
    path = str(write_jsonl(tmp_path / "small.jsonl", text_lines(random.Random(0), 3)))
    reads = _epoch_reads([path], "text", 4, epochs=4)
    for epoch in range(4):
        assert sorted(reads[epoch].values()) == [1, 1, 1]  # each line once per epoch
    for reader in range(4):  # no NoUsableData, and each reader's turn comes
        cursor = ShardCursor([path], "text", reader, 4, "0|0", SkipCounter())
        lines = set()
        for _ in range(3):
            lines.add(cursor.next_record().name)
            cursor.mark_used()
        assert cursor.epoch < 4 and len(lines) == 3


def test_resume_is_exact_across_a_pass_with_nothing_of_its_own(tmp_path):
    path = str(write_jsonl(tmp_path / "small.jsonl", text_lines(random.Random(0), 3)))

    def cursor():
        return ShardCursor([path], "text", 3, 4, "0|0", SkipCounter())

    def take(c, n):
        out = []
        for _ in range(n):
            record = c.next_record()
            c.mark_used()
            out.append((c.epoch, record.name))
        return out

    expected = take(cursor(), 8)
    for stop in range(8):
        first = cursor()
        head = take(first, stop)
        resumed = cursor()
        resumed.load_state_dict(first.state_dict())
        assert head + take(resumed, 8 - stop) == expected, stop


def test_a_source_that_is_all_bad_or_empty_still_stops_the_run(tmp_path):
    bad = str(write_jsonl(tmp_path / "bad.jsonl", [b"{"] * 3))
    cursor = ShardCursor([bad], "text", 1, 4, "0|0", SkipCounter())  # never mark_used: every record is bad
    with pytest.raises(NoUsableData, match="no usable record"):
        for _ in range(20):
            cursor.next_record()
    empty = str(write_jsonl(tmp_path / "empty.jsonl", []))
    with pytest.raises(NoUsableData, match="no record at all"):
        ShardCursor([empty], "text", 0, 4, "0|0", SkipCounter()).next_record()
