"""The decoder reads the global outputs through a learned projection (global width -> k × local width, as BLT)."""

import random

import torch

from lst_train.generation.incremental import incremental_decoder
from lst_train.model import build_model
from lst_train.export import load_exported

from helpers import debug_config, random_stream, static_partition, write_export


def test_the_global_to_local_projection_is_in_the_path():
    cfg = debug_config("lst")
    model = build_model(cfg.model, seed=0).eval()
    projection = model.decoder.global_projection
    assert tuple(projection.weight.shape) == (cfg.model.patch_slots * cfg.model.decoder.dim,
                                              cfg.model.global_transformer.dim)
    row = random_stream(model.vocab, random.Random(0), 48)
    partition = static_partition([row], model.vocab, cfg.patching.size)
    tokens = torch.tensor([row])
    with torch.no_grad():
        before = model(tokens, *partition)
        cached_before = incremental_decoder(model, cfg.patching).step(row[0])
        projection.weight.mul_(-0.5)
        after = model(tokens, *partition)
        cached_after = incremental_decoder(model, cfg.patching).step(row[0])
    assert (before - after).abs().amax(dim=-1).min() > 1e-4, "every position reads the projected global states"
    assert (cached_before - cached_after).abs().max() > 1e-4, "generation reads them too"


def test_the_projection_is_exported(tmp_path):
    """(Its parameters and FLOPs are checked with the rest in test_flops.)"""
    cfg = debug_config("lst")
    model = build_model(cfg.model, seed=3)
    loaded, _ = load_exported(str(write_export(cfg, model, tmp_path / "export")))
    assert torch.equal(loaded.decoder.global_projection.weight, model.decoder.global_projection.weight)
