"""The speech-token cache: later epochs read the codes instead of re-encoding, and yield the same documents."""

import glob
import json

import pytest
import torch

from lst_train.config import load_config
from lst_train.config.data import SourceConfig

from helpers import ASSETS, RECIPES
from helpers.data import reader_stream, units_corpus, write_tar, write_tokenizer



class _NoCodec:
    """Stands in for the built Mimi once everything should come from the cache: any use is a test failure."""

    def __getattr__(self, name):
        raise AssertionError(f"the codec was used ({name}) although the shard is cached")


def _stream(root, cache_dir):
    cache = [f"data.cache_dir={cache_dir}"] if cache_dir else []
    cfg = load_config(RECIPES / "debug_cpu.yaml", [f"data.tokenizer={root / 'tok.tiktoken'}", "data.seq_units=32",
                                                   "patching.strategy=mixed", *cache])
    cfg.data.sources = [SourceConfig(kind="speech", path=str(root / "*.tar"))]
    return reader_stream(cfg)


def _pieces(stream, n):
    return [stream.next_piece() for _ in range(n)]


def test_cached_epochs_skip_the_codec_and_replay_the_documents(tmp_path):
    samples = [(p.stem, {p.suffix[1:]: p.read_bytes(), "json": (ASSETS / f"{p.stem}.json").read_bytes()})
               for p in sorted(ASSETS.glob("*.*[cv]"))]
    samples.insert(0, ("bad", {"wav": b"garbage", "json": json.dumps({"text": "x", "words": []}).encode()}))
    write_tar(tmp_path / "speech-0.tar", samples)
    write_tokenizer(tmp_path / "tok.tiktoken")

    uncached = _stream(tmp_path, None)
    expected = _pieces(uncached, 4)  # two epochs of two good samples

    cached = _stream(tmp_path, tmp_path / "cache")
    first_epoch = _pieces(cached, 2)
    cached.tokenizer.codec._codec = _NoCodec()  # any later codec use fails
    second_epoch = _pieces(cached, 2)
    assert cached.sources[0].epoch == 1
    assert len(glob.glob(str(tmp_path / "cache" / "*" / "*.pt"))) == 1
    assert [p.tokens for p in first_epoch + second_epoch] == [p.tokens for p in expected]
    assert cached.skips.as_dict() == uncached.skips.as_dict() == {"unreadable_audio": 2}


class _Planted:
    """A pickled object that would run code when unpickled without weights_only (touches a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_cache_file_is_a_miss_and_runs_no_code(tmp_path):
    samples = [(p.stem, {p.suffix[1:]: p.read_bytes(), "json": (ASSETS / f"{p.stem}.json").read_bytes()})
               for p in sorted(ASSETS.glob("*.*[cv]"))]
    write_tar(tmp_path / "speech-0.tar", samples)
    write_tokenizer(tmp_path / "tok.tiktoken")
    expected = _pieces(_stream(tmp_path, None), 2)
    _pieces(_stream(tmp_path, tmp_path / "cache"), 3)  # writes the shard's cache file
    [cache_file] = glob.glob(str(tmp_path / "cache" / "*" / "*.pt"))
    torch.save({"0880": _Planted(tmp_path / "pwned")}, cache_file)
    replayed = _pieces(_stream(tmp_path, tmp_path / "cache"), 2)
    assert not (tmp_path / "pwned").exists()
    assert [p.tokens for p in replayed] == [p.tokens for p in expected]


def _units_stream(paths, cache_dir, text_size, reader=0, n_readers=1):
    cache = [f"data.cache_dir={cache_dir}"] if cache_dir else []
    cfg = load_config(RECIPES / "debug_cpu.yaml", [f"data.tokenizer={paths['tokenizer']}", "data.codec.kind=units",
                                                   f"model.vocab.text_size={text_size}", *cache])
    cfg.data.sources = [SourceConfig(kind="speech", path=paths["speech"], sequence="speech")]
    return reader_stream(cfg, reader, n_readers)


@pytest.mark.parametrize("text_size", [32000, 32768])
def test_cached_codes_make_the_same_ids_with_a_large_text_vocabulary(tmp_path, text_size):
    """Cached frames are stored compactly (int16); ids past 32767 (a real BPE's speech block) must not wrap."""
    paths = units_corpus(tmp_path, n_speech_shards=1, samples_per_shard=3, n_text_shards=0)
    expected = _pieces(_units_stream(paths, None, text_size), 9)  # three epochs
    cached = _units_stream(paths, tmp_path / "cache", text_size)
    assert [p.tokens for p in _pieces(cached, 9)] == [p.tokens for p in expected]
    assert cached.sources[0].epoch == 2 and glob.glob(str(tmp_path / "cache" / "*" / "*.pt"))
    assert min(min(p.tokens) for p in expected) >= 0


def test_split_readers_hit_the_cache_in_later_epochs(tmp_path):
    """One shard, two readers: a reader keeps other records each epoch, and finds them cached once any reader
    read them."""
    paths = units_corpus(tmp_path, n_speech_shards=1, samples_per_shard=4, n_text_shards=0)
    for reader in range(2):
        expected = _pieces(_units_stream(paths, None, 2048, reader, 2), 6)
        cached = _units_stream(paths, tmp_path / "cache", 2048, reader, 2)
        assert [p.tokens for p in _pieces(cached, 6)] == [p.tokens for p in expected]
    assert len(glob.glob(str(tmp_path / "cache" / "*" / "*-slot*of2.pt"))) == 2
