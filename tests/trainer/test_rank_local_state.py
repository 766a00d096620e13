"""Per-rank checkpoint state (loader and RNG states) round-trips without pickle: a planted file cannot run code."""

import io
import os
import pickle

import pytest
import torch

from lst_train.trainer.checkpointing import RankLocalState, rng_state, set_rng_state


class _Payload:
    def __reduce__(self):
        return os.system, ("touch /tmp/lst-planted-pickle-ran",)


def test_rng_and_nested_state_round_trip():
    state = {"rng": rng_state(), "loader": {"epoch": 2, "keys": ["a", "b"], "frames": torch.arange(6)}}
    saved = RankLocalState(3, lambda: state, None).state_dict()
    out = []
    RankLocalState(3, None, out.append).load_state_dict(saved)
    assert out[0]["loader"]["keys"] == ["a", "b"] and torch.equal(out[0]["loader"]["frames"], torch.arange(6))
    set_rng_state(out[0]["rng"])
    with pytest.raises(ValueError, match="same number of ranks"):
        RankLocalState(4, None, out.append).load_state_dict(saved)


def test_a_planted_object_is_refused_and_not_run(tmp_path):
    buffer = io.BytesIO()
    torch.save({"x": _Payload()}, buffer)
    with pytest.raises(pickle.UnpicklingError):
        RankLocalState(0, None, lambda s: None).load_state_dict({"rank0": buffer.getvalue()})
    assert not os.path.exists("/tmp/lst-planted-pickle-ran")
    with pytest.raises(ValueError, match="old pickled format"):
        RankLocalState(0, None, lambda s: None).load_state_dict({"rank0": pickle.dumps({"x": 1})})
