"""The speech codec and the model's speech vocabulary must agree, or the run stops at start-up with one line naming
the key and the value to set (not at the first batch, or after a full pass of skipped samples)."""

import pytest
from transformers import MimiConfig

from lst_train.config import ConfigError, load_config
from lst_train.config.data import SourceConfig
from lst_train.data.dataset import resolve_shards
from lst_train.data.loader_spec import LoaderSpec

from helpers import RECIPES
from helpers.data import units_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return units_corpus(tmp_path_factory.mktemp("corpus"), n_speech_shards=1, samples_per_shard=1, n_text_shards=1)


def _resolve(corpus, *overrides):
    cfg = load_config(RECIPES / "debug_cpu.yaml", [f"data.tokenizer={corpus['tokenizer']}", *overrides])
    cfg.data.sources = [SourceConfig(kind="speech", path=corpus["speech"])]
    return resolve_shards(LoaderSpec.from_recipe(cfg))


def _one_line(info) -> str:
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("overrides, line", [
    (["model.vocab.speech_codebook_size=500"], r"^model\.vocab\.speech_codebook_size: Mimi has 2048 codes "
                                               r".* set model\.vocab\.speech_codebook_size=2048, got 500$"),
    (["model.vocab.n_codebooks=33"], r"^model\.vocab\.n_codebooks: Mimi has 32 codebooks; set .* between 1 and 32"),
])
def test_mimi_and_the_speech_vocabulary_must_agree(corpus, overrides, line):
    with pytest.raises(ConfigError, match=line) as info:
        _resolve(corpus, *overrides)
    _one_line(info)
    assert len(_resolve(corpus)) == 1  # the recipe as it is agrees


def test_pretrained_mimi_is_checked_by_its_own_config(corpus, tmp_path):
    MimiConfig(codebook_size=1024).save_pretrained(tmp_path / "mimi")
    with pytest.raises(ConfigError, match=r"^model\.vocab\.speech_codebook_size: Mimi \(.*mimi\) has 1024 codes"):
        _resolve(corpus, f"data.codec.weights={tmp_path / 'mimi'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^data\.codec\.weights: .*empty' holds no readable Mimi config"):
        _resolve(corpus, f"data.codec.weights={tmp_path / 'empty'}")


def test_precomputed_units_need_one_codebook(corpus):
    overrides = ["data.codec.kind=units", "model.vocab.n_codebooks=2", f"data.sources=[{{kind: speech, path: "
                                                                       f"{corpus['speech']}}}]"]
    with pytest.raises(ConfigError, match=r"^model\.vocab\.n_codebooks: data\.codec\.kind=units .*set "
                                          r"model\.vocab\.n_codebooks=1, got 2$") as info:
        load_config(RECIPES / "debug_cpu.yaml", overrides)
    _one_line(info)
