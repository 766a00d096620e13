"""evaluation.validation's sources are checked at start-up, under their own key: a bad one must not wait for the
first evaluation hours into a run, nor be reported as data.sources."""

import pytest

from lst_train.config import ConfigError, load_config
from lst_train.data.loader_spec import LoaderSpec
from lst_train.evaluation.during_training import TrainingEvaluator
from lst_train.model import build_model

from helpers import RECIPES
from helpers.data import units_corpus


def test_a_validation_weight_of_zero_fails_at_load():
    with pytest.raises(ConfigError, match=r"^evaluation\.validation\[0\]\.weight: must be a finite number > 0"):
        load_config(RECIPES / "debug_cpu.yaml", ["evaluation.validation=[{kind: text, path: v.jsonl, weight: 0}]"])


def test_a_validation_glob_matching_nothing_fails_when_the_evaluator_is_built(tmp_path):
    corpus = units_corpus(tmp_path, n_speech_shards=1, samples_per_shard=1, n_text_shards=1)
    overrides = [f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units",
                 f"data.sources=[{{kind: text, path: '{corpus['text']}'}}]"]
    good = load_config(RECIPES / "debug_cpu.yaml",
                       [*overrides, f"evaluation.validation=[{{kind: text, path: '{corpus['text']}'}}]"])
    model = build_model(good.model)
    TrainingEvaluator(good.evaluation, LoaderSpec.from_recipe(good), model, 0, 1)
    validation = f"[{{kind: text, path: '{corpus['text']}'}}, {{kind: text, path: nope/*.jsonl}}]"
    bad = load_config(RECIPES / "debug_cpu.yaml", [*overrides, f"evaluation.validation={validation}"])
    with pytest.raises(ConfigError, match=r"^evaluation\.validation\[1\]\.path: no file matches 'nope/\*\.jsonl'"):
        TrainingEvaluator(bad.evaluation, LoaderSpec.from_recipe(bad), model, 0, 1)
