"""The demo report's verdict judges each family against its own reference (compare_to), on test and on valid, and
a demo sweep's overrides can name the corpus directory (DEMO_DATA)."""

import pytest
import yaml

from lst_train.config import ConfigError
from lst_train.config.sweep import load_sweep, validate_sweep
from lst_train.demo.pipeline import demo_sweep
from lst_train.demo.report import verdict

from helpers import RECIPES


def _heldout(speech_per_second: float, text_per_token: float) -> dict:
    sources = [{"nats_per_speech_second": speech_per_second}, {"nats_per_text_token": text_per_token}]
    return {"valid": {"sources": sources}, "test": {"sources": sources}}


def test_each_family_is_judged_against_its_own_reference_per_seed():
    rows = [{"family": f, "seed": s, "cell": f"{f}-g-s{s}"} for f in ("baseline", "baseline-units", "lst-units") for s in (0, 1)]
    heldout = {"baseline s0": _heldout(100.0, 5.0), "baseline s1": _heldout(102.0, 5.0),
               "baseline-units s0": _heldout(50.0, 4.0), "baseline-units s1": _heldout(52.0, 4.2),
               "lst-units s0": _heldout(47.0, 4.1), "lst-units s1": _heldout(48.0, 4.2)}
    references = {"baseline": "baseline", "baseline-units": "baseline", "lst-units": "baseline-units"}
    lines = verdict(rows, heldout, references)
    assert len(lines) == 2
    assert lines[1].startswith("- lst-units vs baseline-units, held-out test, 2 seed(s)")
    assert "speech -3.5000 ± 0.7071 nats per second of speech (ahead of the baseline-units, beyond two" in lines[1]
    assert "text +0.0500 ± 0.0707 nats per text token" in lines[1]
    assert lines == [line.replace("held-out valid", "held-out test")
                     for line in verdict(rows, heldout, references, "valid")]


def test_demo_data_in_overrides_names_the_corpus_and_compare_to_is_checked(tmp_path):
    sweep = {"name": "s", "out_dir": "x", "budgets": [1e9], "sizes": [{"name": "g", "n_layers": 1, "dim": 64,
                                                                       "n_heads": 1}],
             "families": [{"name": "baseline", "recipe": str(RECIPES / "debug_cpu_baseline.yaml")},
                          {"name": "lst", "recipe": str(RECIPES / "debug_cpu.yaml"), "compare_to": "baseline",
                           "overrides": ["data.codec.weights=DEMO_DATA/units.safetensors"]}],
             "overrides": ["data.cache_dir=DEMO_DATA/c"]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    located = demo_sweep(str(tmp_path / "s.yaml"), str(tmp_path / "out"), 1.0, 1)
    assert located.families[1].overrides == [f"data.codec.weights={tmp_path}/out/data/units.safetensors"]
    assert located.overrides[0] == f"data.cache_dir={tmp_path}/out/data/c"
    sweep["families"][1]["compare_to"] = "nobody"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(sweep))
    with pytest.raises(ConfigError, match=r"^families\[1\]\.compare_to: must be one of"):
        validate_sweep(load_sweep(str(tmp_path / "s.yaml")))
