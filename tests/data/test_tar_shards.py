"""Speech shards as tar files: a cut or damaged archive is counted wherever the cut lands."""

import random
import tarfile

import pytest

from lst_train.data.shards import tar_records
from lst_train.data.skips import SkipCounter

from helpers.data import audio_sample, write_tar


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """A 4-sample shard and its members' (header offset, data offset, size)."""
    rng = random.Random(0)
    path = write_tar(tmp_path_factory.mktemp("tar") / "s.tar", [(f"k{i}", audio_sample(rng, 3)) for i in range(4)])
    with tarfile.open(path) as tar:
        return path.read_bytes(), [(m.offset, m.offset_data, m.size) for m in tar]


def _read(tmp_path, data: bytes):
    path = tmp_path / "cut.tar"
    path.write_bytes(data)
    skips = SkipCounter()
    return [(r.name, sorted(r.files)) for r in tar_records(str(path), skips)], skips.as_dict()


def test_a_whole_shard_reads_without_a_skip(tmp_path, shard):
    records, skips = _read(tmp_path, shard[0])
    assert records == [(f"k{i}", ["json", "wav"]) for i in range(4)] and skips == {}


@pytest.mark.parametrize("where", ["at k2's header", "inside k2's header", "garbled k2 header",
                                   "between k1.wav and k1.json", "before the end-of-archive blocks"])
def test_a_shard_cut_at_or_inside_a_header_is_counted(tmp_path, shard, where, caplog):
    """tarfile itself ends quietly at a cut header: the records before it are read, the loss is counted and
    logged with the byte where the archive stops making sense."""
    data, members = shard
    k1_json, k2_wav, k3_json = members[3][0], members[4][0], members[7]
    end = k3_json[1] + (k3_json[2] + 511) // 512 * 512
    cut, stop, n_records = {
        "at k2's header": (data[:k2_wav], k2_wav, 2),
        "inside k2's header": (data[:k2_wav + 100], k2_wav, 2),
        "garbled k2 header": (data[:k2_wav] + b"\x01" * 512 + data[k2_wav + 512:], k2_wav, 2),
        "between k1.wav and k1.json": (data[:k1_json], k1_json, 2),  # k1 without its json, k2 and k3 lost
        "before the end-of-archive blocks": (data[:end], end, 4),
    }[where]
    records, skips = _read(tmp_path, cut)
    assert skips == {"truncated_shard": 1}
    assert len(records) == n_records
    assert "no end-of-archive block after the last whole member" in caplog.text and f"byte {stop} " in caplog.text
