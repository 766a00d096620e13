"""Recipes load and build; bad recipes fail at start-up with one line naming the key."""

import pytest
import torch

from lst_train.config import Arch, ConfigError, LRSchedule, load_config
from lst_train.data.dataset import resolve_shards
from lst_train.data.loader_spec import LoaderSpec
from lst_train.flops import param_counts
from lst_train.model import build_model

from helpers import RECIPES


# Sweep files (sweep_*.yaml, tests/test_sweeps.py) name recipes rather than being one.
@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml") if not p.name.startswith("sweep_")))
def test_every_recipe_loads_and_builds_on_meta(recipe):
    cfg = load_config(RECIPES / recipe)
    with torch.device("meta"):
        model = build_model(cfg.model)
    assert sum(p.numel() for p in model.parameters()) == param_counts(cfg.model)["total"]


def test_1b_recipes_have_the_published_shapes():
    lst = load_config(RECIPES / "lst_1b.yaml").model
    assert (lst.encoder.n_layers, lst.encoder.dim, lst.encoder.n_heads, lst.encoder.window) == (1, 1024, 16, 512)
    assert (lst.global_transformer.n_layers, lst.global_transformer.dim, lst.global_transformer.n_heads) == (25, 2048, 16)
    assert (lst.decoder.n_layers, lst.decoder.dim, lst.decoder.n_heads, lst.decoder.window) == (9, 1024, 16, 512)
    assert lst.patch_slots == 2 and lst.rope_theta == 5e5
    counts = param_counts(lst)
    assert 1.25e9 < counts["global_transformer"] < 1.35e9
    assert counts["encoder"] < 0.1e9 and counts["decoder"] < 0.25e9
    baseline = load_config(RECIPES / "baseline_1b.yaml").model
    assert param_counts(baseline)["global_transformer"] == counts["global_transformer"]


def test_overrides_apply_with_types():
    cfg = load_config(RECIPES / "debug_cpu.yaml", ["model.encoder.window=7", "model.pooling=mean"])
    assert cfg.model.encoder.window == 7 and cfg.model.pooling == "mean"


@pytest.mark.parametrize("yaml_text, overrides, key", [
    ("model:\n  encoder:\n    dimm: 3\n", [], "model.encoder.dimm"),
    ("model:\n  encoder:\n    dim: wide\n", [], "model.encoder.dim"),
    ("", ["model.global_transformer.dim=96"], "model.global_transformer.dim"),
    ("", ["model.decoder.dim=64"], "model.decoder.dim"),
    ("", ["model.arch=transformer"], "model.arch"),
    ("", ["model.pooling=median"], "model.pooling"),
    ("", ["model.encoder.n_heads=3"], "model.encoder.n_heads"),
    ("", ["model.unpool_window=0"], "model.unpool_window"),
    ("", ["patching.size=0"], "patching.size"),
    ("", ["nosuch.key=1"], "nosuch"),
    ("", ["training.beta2=1.5"], "training.beta2"),
    ("", ["training.weight_decay=-1"], "training.weight_decay"),
    ("", ["training.local_lr_multiplier=-3"], "training.local_lr_multiplier"),
    ("", ["training.grad_clip=-1"], "training.grad_clip"),
    ("", ["training.max_bad_steps=-1"], "training.max_bad_steps"),
    ("", ["training.collective_timeout_s=0"], "training.collective_timeout_s"),
    ("", ["model.norm_eps=-1"], "model.norm_eps"),
    ("", ["evaluation.batch_size=0"], "evaluation.batch_size"),
])
def test_bad_config_fails_with_one_line_naming_the_key(tmp_path, yaml_text, overrides, key):
    message = _config_error(tmp_path, yaml_text, overrides)
    assert "\n" not in message
    assert key in message


def _config_error(tmp_path, yaml_text: str, overrides: list[str]) -> str:
    """The ConfigError line of a recipe holding `yaml_text`, loaded with `overrides`."""
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(recipe, overrides)
    return str(info.value)


@pytest.mark.parametrize("yaml_text, overrides, line", [
    ("data:\n  sources:\n    - {kind: text, path: a}\n    - {kind: video, path: b}\n", [],
     "data.sources[1].kind: Invalid value 'video', expected one of [speech, text]"),
    ("data:\n  sources:\n    - {kind: text, path: a, colour: red}\n", [], "data.sources[0].colour: Key 'colour' not in"),
    ("", ["evaluation.sets=[{name: a, path: b, settings: [t2t, x2y]}]"], "evaluation.sets[0].settings[1]: Invalid value"),
    ("", ["model.kernels=fast"], "model.kernels: Invalid value 'fast', expected one of [auto, triton, reference]"),
    ("", ["patching.strategy=learned"], "patching.strategy: Invalid value 'learned'"),
])
def test_a_bad_choice_or_list_item_is_named_by_its_full_key(tmp_path, yaml_text, overrides, line):
    assert _config_error(tmp_path, yaml_text, overrides).startswith(line)


def test_choice_fields_are_enums_that_compare_as_their_names():
    cfg = load_config(RECIPES / "debug_cpu.yaml", ["model.arch=baseline", "training.schedule=wsd"])
    assert isinstance(cfg.model.arch, Arch) and cfg.model.arch == "baseline" and f"{cfg.model.arch}" == "baseline"
    assert cfg.training.schedule is LRSchedule.wsd
    assert load_config(RECIPES / "debug_cpu.yaml", [f"model.arch={cfg.model.arch}"]).model.arch is Arch.baseline


def test_list_items_can_be_overridden_by_index():
    cfg = load_config(RECIPES / "debug_cpu.yaml", ["data.sources[1].path=other/*.jsonl", "data.cache_dir="])
    assert cfg.data.sources[1].path == "other/*.jsonl" and cfg.data.sources[1].kind == "text"
    assert cfg.data.cache_dir == ""


@pytest.mark.parametrize("overrides, key", [
    (["data.sources[0].weight=heavy"], "data.sources[0].weight"),
    (["data.sources[0].colour=red"], "data.sources[0].colour"),
    (["data.sources[0].kind=video"], "data.sources[0].kind"),
    (["data.sources[0].weight=0"], "data.sources[0].weight"),
    (["data.codec.device=cuda", "data.num_workers=2"], "data.codec.device"),
    (["data.codec.device=gpu"], "data.codec.device"),
    (["data.codec.max_seconds=0"], "data.codec.max_seconds"),
    (["data.codec.silence_threshold=-1"], "data.codec.silence_threshold"),
    (["data.sources[0].weight=inf"], "data.sources[0].weight"),
    (["data.seq_units=32", "data.max_row_tokens=64", "patching.strategy=aligned", "model.vocab.n_codebooks=8"],
     "data.max_row_tokens"),
    (["training.steps=0"], "training.steps"),
    (["training.warmup_steps=500", "training.steps=100"], "training.warmup_steps"),
    (["training.stop_at=300", "training.steps=100"], "training.stop_at"),
    (["training.schedule=linear"], "training.schedule"),
    (["training.activation_checkpoint=some"], "training.activation_checkpoint"),
    (["training.mixed_precision=fp8"], "training.mixed_precision"),
    (["training.device=tpu"], "training.device"),
    (["checkpoint.keep_last=1"], "checkpoint.keep_last"),
    (["checkpoint.resume=latest"], "checkpoint.resume"),
    (["checkpoint.initial_model=relative/step-4"], "checkpoint.initial_model"),
    (["patching.strategy=entropy"], "patching.entropy_table"),
    (["patching.strategy=entropy", "patching.entropy_table=t", "patching.entropy_threshold=-1"],
     "patching.entropy_threshold"),
    (["patching.curriculum_start=0.9", "patching.curriculum_end=0.5"], "patching.curriculum_start"),
])
def test_bad_data_and_training_keys_fail_with_one_line(overrides, key):
    with pytest.raises(ConfigError) as info:
        load_config(RECIPES / "debug_cpu.yaml", overrides)
    assert "\n" not in str(info.value) and key in str(info.value)


def test_a_row_cap_that_holds_bos_and_the_longest_patch_is_accepted():
    """The cap's lower bound follows the patches the strategy makes: static `size`, aligned up to `max_len`."""
    common = ["data.seq_units=32", "model.vocab.n_codebooks=8", "data.codec.device=cuda:1"]
    load_config(RECIPES / "debug_cpu.yaml", [*common, "data.max_row_tokens=64", "patching.strategy=static"])
    load_config(RECIPES / "debug_cpu.yaml", [*common, "data.max_row_tokens=129", "patching.strategy=aligned"])
    with pytest.raises(ConfigError, match=r"^data\.max_row_tokens: must be 0 \(no cap\) or >= 129: .*got 128$"):
        load_config(RECIPES / "debug_cpu.yaml", [*common, "data.max_row_tokens=128", "patching.strategy=aligned"])


def test_missing_recipe_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", ["lst_1b.yaml", "baseline_1b.yaml"])
def test_1b_recipes_hold_the_published_run_and_placeholder_paths_stop_at_start_up(recipe):
    cfg = load_config(RECIPES / recipe)
    t, d = cfg.training, cfg.data
    assert (d.seq_units, d.batch_size, t.steps, t.warmup_steps, t.lr, t.min_lr_ratio) == (4096, 4, 200000, 2000, 4e-4,
                                                                                        0.01)
    assert (t.beta1, t.beta2, t.weight_decay, t.grad_clip, t.mixed_precision) == (0.9, 0.95, 0.1, 1.0, "bf16")
    assert [s.weight for s in d.sources] == [1.0, 2.0] and d.pad_to_multiple == 512
    with pytest.raises(ConfigError, match=r"^data\.sources\[0\]\.path: no file matches"):
        resolve_shards(LoaderSpec.from_recipe(cfg))
