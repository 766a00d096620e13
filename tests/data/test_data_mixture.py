"""Mixture weights are shares of training tokens, whatever the documents' lengths; the mixer resumes exactly."""

import io
import itertools
import json
import random

import pytest
import torch

from lst_train.config import load_config
from lst_train.config.data import SourceConfig
from lst_train.data.stats import LoaderStats

from helpers import RECIPES
from helpers.data import recipe_loader, WORDS, write_jsonl, write_tokenizer


def _lines(rng, n, words):
    return [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(words))}).encode() for _ in range(n)]


@pytest.fixture(scope="module")
def two_lengths(tmp_path_factory):
    """Two text sources whose documents differ 20x in length (10 and 200 words)."""
    root = tmp_path_factory.mktemp("mix")
    rng = random.Random(0)
    write_jsonl(root / "short.jsonl", _lines(rng, 400, 10))
    write_jsonl(root / "long.jsonl.zst", _lines(rng, 60, 200))
    return root, write_tokenizer(root / "tokenizer.tiktoken")


def _config(root, tokenizer, weights, *extra):
    cfg = load_config(RECIPES / "debug_cpu_baseline.yaml", [f"data.tokenizer={tokenizer}", "data.seq_units=64",
                                                             "data.batch_size=2", *extra])
    cfg.data.sources = [SourceConfig(kind="text", path=str(root / "short.jsonl"), weight=weights[0]),
                        SourceConfig(kind="text", path=str(root / "long.jsonl.zst"), weight=weights[1])]
    return cfg


@pytest.mark.parametrize("weights", [(1.0, 1.0), (3.0, 7.0), (0.8, 0.2)])
def test_realised_token_shares_follow_the_weights(two_lengths, weights):
    cfg = _config(*two_lengths, weights)
    stats = LoaderStats()
    for batch in itertools.islice(recipe_loader(cfg), 300):
        stats.update(batch)
    shares = stats.summary()["source_token_shares"]
    wanted = [w / sum(weights) for w in weights]
    assert all(abs(share - want) <= 0.03 for share, want in zip(shares, wanted)), (shares, wanted)
    # Per-row source counts cover every token but each row's <bos> and padding.
    assert sum(stats.source_tokens) == stats.sums["tokens"] - 300 * cfg.data.batch_size


def test_the_mixer_resumes_exactly_and_refuses_an_old_state(two_lengths):
    cfg = _config(*two_lengths, (3.0, 7.0))
    loader = recipe_loader(cfg)
    batches = iter(loader)
    for _ in range(7):
        next(batches)
    buffer = io.BytesIO()
    torch.save(loader.state_dict(), buffer)
    expected = [next(batches) for _ in range(5)]
    restored = recipe_loader(cfg)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    restored.load_state_dict(state)
    again = list(itertools.islice(restored, 5))
    for a, b in zip(expected, again):
        assert torch.equal(a.tokens, b.tokens)
        assert torch.equal(a.row_stats["source_tokens"], b.row_stats["source_tokens"])
    for old in (_format_1(state["dataset_state"]), _format_1(state["dataset_state"], token_shares=False)):
        stale = recipe_loader(cfg)
        stale.load_state_dict({**state, "dataset_state": old})
        with pytest.raises(ValueError, match="format 1.*start the run again"):
            next(iter(stale))


def _format_1(state, token_shares=True):
    """The loader state as lst_train wrote it before the stream became stages: one flat dict; before token-share
    mixing (`token_shares` False) it held mix_draws instead of source_tokens."""
    sources = state["sources"]
    old = {"reader": state["reader"], "batches": state["collator"]["batches"], "skipped": state["skipped"],
           "documents": state["mixture"]["documents"], "cursors": [s["cursor"] for s in sources],
           "packer": state["packer"], "prepared": [s["prepared"] for s in sources]}
    if token_shares:
        return {**old, "source_tokens": state["mixture"]["source_tokens"]}
    return {**old, "mix_draws": 0}
