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


def test_validation_rows_of_a_curriculum_model_are_patched_as_it_is_scored(tmp_path):
    """A curriculum's first step patches every document aligned (word timings: not causal); the validation rows
    must be cut as the model is scored, static, at every evaluation."""
    from lst_train.data.dataset import build_dataloader
    from lst_train.data.pieces import row_partition
    from lst_train.evaluation.prompts import evaluation_patcher

    corpus = units_corpus(tmp_path, n_speech_shards=1, samples_per_shard=6, n_text_shards=1)
    speech = f"[{{kind: speech, path: '{corpus['speech']}', sequence: speech}}]"
    cfg = load_config(RECIPES / "debug_cpu.yaml", [
        f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", f"data.sources={speech}",
        "patching.strategy=curriculum", "data.seq_units=48", f"evaluation.validation={speech}"])
    spec = LoaderSpec.from_recipe(cfg)
    training = next(iter(build_dataloader(spec, 0, 1)))
    validation = next(iter(build_dataloader(spec.reading(cfg.evaluation.validation), 0, 1)))
    static = evaluation_patcher("lst", cfg.patching, cfg.training.steps)
    vocab = spec.vocab()

    def static_rows(batch) -> bool:
        """Each row's patches (before the batch's padding, one patch of its own) are static's."""
        for tokens, lengths in zip(batch.tokens, batch.patch_lengths):
            expected = row_partition(tokens[tokens != vocab.pad].tolist(), vocab, static)[0]
            if lengths.tolist()[:len(expected)] != expected:
                return False
        return True

    assert not static_rows(training), "the curriculum's first training step is aligned: the test would mean nothing"
    assert static_rows(validation)
