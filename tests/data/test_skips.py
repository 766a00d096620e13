"""Skip reasons: one list (REASONS) that the counters enforce and docs/data.md's table explains."""

import pytest

from lst_train.data.skips import REASONS, SkipCounter

from helpers import REPO


def test_a_counter_takes_known_reasons_and_refuses_others():
    skips = SkipCounter()
    skips.add("too_long_for_heldout", "shard.tar:k", "over 64 tokens")
    assert skips.as_dict() == {"too_long_for_heldout": 1}
    with pytest.raises(ValueError, match="unknown skip reason 'too_long'"):
        skips.add("too_long", "shard.tar:k")


def test_every_reason_is_in_the_docs_table():
    section = (REPO / "docs" / "data.md").read_text().split("## Bad input", 1)[1].split("\n## ", 1)[0]
    assert [reason for reason in REASONS if f"`{reason}`" not in section] == []
