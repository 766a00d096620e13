"""The demo report's verdict judges each family against its own reference (compare_to), on test and on valid, and
a demo sweep's overrides can name the corpus directory (DEMO_DATA)."""

import pytest
import yaml

from lst_train.config import ConfigError
from lst_train.config.sweep import load_sweep, validate_sweep
from lst_train.demo.pipeline import demo_sweep
from lst_train.demo.report import frontier, label_rows, run_label, verdict

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


def test_a_sweep_over_sizes_and_budgets_compares_runs_at_the_same_point_and_picks_sizes_on_valid():
    rows = label_rows([{"family": f, "seed": 0, "size": size, "budget": budget, "cell": f"{f}-{size}-C{budget:g}"}
                       for f in ("baseline", "lst") for size in ("g64", "g128") for budget in (1e12, 2e12)])
    assert len({run_label(r) for r in rows}) == 8 and run_label(rows[0]) == "baseline g64 C1e+12"
    # Valid and test disagree on purpose: the size is chosen on valid, the loss reported on test.
    speech = {("baseline", "g64"): (60.0, 61.0), ("baseline", "g128"): (62.0, 59.0),
              ("lst", "g64"): (63.0, 64.0), ("lst", "g128"): (58.0, 60.0)}
    heldout = {}
    for r in rows:
        valid, test = speech[r["family"], r["size"]]
        shift = 0.0 if r["budget"] == 1e12 else -1.0
        heldout[run_label(r)] = {"valid": {"sources": [{"nats_per_speech_second": valid + shift},
                                                       {"nats_per_text_token": 5.0}]},
                                 "test": {"sources": [{"nats_per_speech_second": test + shift},
                                                      {"nats_per_text_token": 5.0}]}}
    references = {"baseline": "baseline", "lst": "baseline"}
    lines = verdict(rows, heldout, references)
    assert len(lines) == 4 and lines[1].startswith("- lst vs baseline at g128, 1e+12 FLOPs, held-out test")
    assert lines[0].startswith("- lst vs baseline at g64, 1e+12 FLOPs")  # the sweep's order of sizes
    assert "speech +1.0000 (one seed: no spread)" in lines[1]  # lst g128 (60) vs baseline g128 (59)
    table = frontier(rows, heldout, references)
    assert "| 1e+12 | baseline | g64 | 61 | 5 |" in table and "| 1e+12 | lst | g128 | 60 | 5 |" in table
    assert "- 1e+12 FLOPs: lst at its best size vs baseline at its own: speech -1.0000" in "\n".join(table)


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
