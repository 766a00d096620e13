"""`lst-train demo --sweep` fits an entropy family's table before planning, once, on the sweep's speech (a corpus
read through two sources, interleaved and speech-only, counted once)."""

import os

import numpy as np
import yaml

from lst_train.config import load_config
from lst_train.config.sweep import load_sweep
from lst_train.data.entropy_fit import fit_entropy_table
from lst_train.data.entropy_table import EntropyTable
from lst_train.data.skips import SkipCounter
from lst_train.demo.pipeline import fit_entropy_tables
from lst_train.sweeps.plan import plan_sweep

from helpers import RECIPES
from helpers.data import units_corpus


def test_an_entropy_family_gets_its_table_fitted_once_before_the_plan(tmp_path):
    corpus = units_corpus(tmp_path / "corpus", n_speech_shards=2, samples_per_shard=5)
    speech = corpus["speech"]
    data = [f"data.sources=[{{kind: speech, path: '{speech}', sequence: interleaved}}, "
            f"{{kind: speech, path: '{speech}', sequence: speech}}, {{kind: text, path: '{corpus['text']}'}}]",
            f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", "data.seq_units=64", "data.batch_size=2"]
    table = tmp_path / "entropy.safetensors"
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "t", "out_dir": str(tmp_path / "out"), "budgets": [1e11], "overrides": data, "measure_batches": 2,
        "sizes": [{"name": "g32", "n_layers": 1, "dim": 32, "n_heads": 2}],
        "families": [{"name": "baseline", "recipe": str(RECIPES / "debug_cpu_baseline.yaml")},
                     {"name": "lst-entropy4", "recipe": str(RECIPES / "debug_cpu.yaml"),
                      "overrides": ["patching.strategy=entropy", f"patching.entropy_table={table}"]}]}))
    sweep = load_sweep(sweep_file)
    fit_entropy_tables(sweep)
    fitted = EntropyTable.load(str(table))
    single = load_config(RECIPES / "debug_cpu.yaml", [*data[1:], f"data.sources=[{{kind: speech, path: '{speech}'}}]"])
    alone, documents = fit_entropy_table(single.data, single.model, SkipCounter())
    assert documents == 10 and np.array_equal(fitted.frames, alone.frames), "the corpus is counted once"
    assert np.array_equal(fitted.entropy, alone.entropy) and fitted.codec == alone.codec
    written = os.stat(table).st_mtime_ns
    fit_entropy_tables(sweep)  # a re-run keeps the table the finished runs were trained with
    assert os.stat(table).st_mtime_ns == written
    plan = plan_sweep(sweep)
    assert {cell.family for cell in plan.cells} == {"baseline", "lst-entropy4"}
