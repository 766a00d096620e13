"""A run resumed on more ranks: readers given another reader's state report its skip counts once, not once each."""

from lst_train.config import load_config
from lst_train.config.data import SourceConfig
from lst_train.data.skips import merge_skip_counts

from helpers import RECIPES
from helpers.data import reader_stream, write_jsonl, write_tokenizer


def test_more_readers_resuming_one_state_count_its_skips_once(tmp_path):
    lines = [b'{"text": "the fox"}', b"{broken"] * 8
    write_jsonl(tmp_path / "a.jsonl", lines)
    write_jsonl(tmp_path / "b.jsonl", lines)
    cfg = load_config(RECIPES / "debug_cpu.yaml", [f"data.tokenizer={write_tokenizer(tmp_path / 'tok.tiktoken')}",
                                                   "data.seq_units=16", "data.batch_size=1"])
    cfg.data.sources = [SourceConfig(kind="text", path=str(tmp_path / "*.jsonl"))]
    old = [reader_stream(cfg, reader, 2) for reader in range(2)]
    for stream in old:
        for _ in range(3):
            stream.next_batch()
    counts = merge_skip_counts(stream.skips.as_dict() for stream in old)
    assert counts["invalid_json"] >= 2
    new = [reader_stream(cfg, reader, 4) for reader in range(4)]
    for reader, stream in enumerate(new):  # rank r takes the state of rank r mod 2
        stream.load_state_dict(old[reader % 2].state_dict())
    assert merge_skip_counts(stream.skips.as_dict() for stream in new) == counts
