"""Shared test helpers: repository paths, the debug recipes, token rows as the loader makes them, partitions, exports.
Data-writing helpers (shards, corpora, tokenizers) are in helpers.data."""

import json
import random
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

import numpy as np

from lst_train.config import Config, PatchingConfig, load_config
from lst_train.config.patching import generation_patching
from lst_train.data.entropy_table import EntropyTable
from lst_train.data.pieces import row_partition
from lst_train.data.patchers import Patcher
from lst_train.patching import pad_closed_early, pad_patch_lengths
from lst_train.runs import read_metrics
from lst_train.vocab import Vocab

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
ASSETS = REPO / "tests" / "assets" / "librivox"
"""Real LibriVox recordings (Debian pocketsphinx-testdata) with transcripts and word timings."""


def losses_by_step(run_dir: str | Path) -> dict[int, float]:
    """step -> loss of a run's metrics, the last record of a step winning (a relaunch appends the steps it re-runs)."""
    return {record["step"]: record["loss"] for record in read_metrics(str(run_dir))}


def debug_config(arch: str = "lst", *overrides: str) -> Config:
    recipe = "debug_cpu.yaml" if arch == "lst" else "debug_cpu_baseline.yaml"
    return load_config(RECIPES / recipe, overrides)


def random_document(vocab: Vocab, rng: random.Random, n_spans: int, start_with_speech: bool = False,
                    first_marker: bool = True) -> list[int]:
    """An interleaved document: alternating <t> text and <s> speech spans, ended by <eos>."""
    doc: list[int] = []
    speech = start_with_speech
    for span in range(n_spans):
        marker = first_marker or span > 0
        if speech:
            doc += [vocab.speech_marker] * marker + [vocab.speech_id(rng.randrange(vocab.speech_codebook_size))
                                            for _ in range(rng.randint(1, 9))]
        else:
            doc += [vocab.text_marker] * marker + [rng.randrange(vocab.text_size) for _ in range(rng.randint(1, 4))]
        speech = not speech
    return doc + [vocab.eos]


def random_stream(vocab: Vocab, rng: random.Random, length: int, prefix: list[int] | None = None,
                  eos: bool = True) -> list[int]:
    """`prefix` (default [<bos>]) continued to `length` tokens the way packed rows look: <s> speech spans of whole
    frames (all codebooks in order; an unfinished frame of the prefix is finished first), <t> text spans, and
    <eos> between documents unless `eos` is False (one document). Spans end at random frames, so they end on and
    off any static grid."""
    row = list(prefix or [vocab.bos])
    run = 0
    while run < len(row) and vocab.speech_start <= row[-1 - run] < vocab.speech_end:
        run += 1
    last = row[-1]
    mode = "speech" if run or last == vocab.speech_marker else \
        "text" if last < vocab.text_size or last == vocab.text_marker else "start"
    while len(row) < length:
        draw = rng.random()
        if run % vocab.n_codebooks or (mode == "speech" and (run == 0 or draw < 0.75)):
            row.append(vocab.speech_id(rng.randrange(vocab.speech_codebook_size), run % vocab.n_codebooks))
            run += 1
            continue
        run = 0
        if mode == "text" and draw < 0.7:
            row.append(rng.randrange(vocab.text_size))
            continue
        marker = rng.choice([vocab.text_marker, vocab.speech_marker] + [vocab.eos] * (eos and mode != "start"))
        row.append(marker)
        mode = {vocab.text_marker: "text", vocab.speech_marker: "speech", vocab.eos: "start"}[marker]
    return row[:length]


def static_partition(rows: list[list[int]], vocab: Vocab, frames_per_patch: int,
                     patching: PatchingConfig | None = None, step: int = 0, total_steps: int = 1):
    """(patch_lengths [B, P], closed_early [B, P]) of token rows, as the loader's patcher cuts them: static patches
    of `frames_per_patch` frames, or `patching` (mixed / curriculum: its static part) at `step` of `total_steps`."""
    patcher = Patcher(patching or PatchingConfig(size=frames_per_patch), total_steps)
    assert patcher.aligned_probability(step) == 0.0, "a token row has no word timings: patch it statically"
    partitions = [row_partition(row, vocab, patcher) for row in rows]
    return pad_patch_lengths([p for p, _ in partitions]), pad_closed_early([e for _, e in partitions])


def random_partition(tokens: list[int], vocab: Vocab, rng: random.Random, max_len: int) -> list[int]:
    """Speech runs cut into random lengths 1..max_len; every other token its own patch."""
    lengths: list[int] = []
    run = 0
    for token in tokens + [-1]:
        if vocab.speech_start <= token < vocab.speech_end:
            run += 1
            continue
        while run:
            cut = rng.randint(1, min(run, max_len))
            lengths.append(cut)
            run -= cut
        if token != -1:
            lengths.append(1)
    return lengths


def write_export(cfg: Config, model: torch.nn.Module, out_dir: Path) -> Path:
    """An export directory (what `lst-train export` writes) for `model` built from `cfg`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), out_dir / "model.safetensors")
    (out_dir / "config.json").write_text(json.dumps(OmegaConf.to_container(OmegaConf.structured(cfg))))
    return out_dir


def full_forward(model, cfg, tokens: list[int]) -> torch.Tensor:
    """Logits [T, V] of one teacher-forced forward over `tokens`, patched as the loader patches a row (static, or
    entropy for an entropy model)."""
    device = next(model.parameters()).device
    patching = generation_patching(cfg.patching)
    partition = static_partition([tokens], model.vocab, cfg.patching.size, patching) if cfg.model.arch == "lst" \
        else ()
    with torch.no_grad():
        return model(torch.tensor([tokens], device=device), *(t.to(device) for t in partition))[0]


def write_entropy_table(path: Path, codebook_size: int, seed: int = 0, codec: str = "test") -> str:
    """An entropy table with seeded random entropies, every code seen once: the threshold for patches of p frames on
    average makes 1/p of the codes end a patch."""
    rng = np.random.default_rng(seed)
    EntropyTable(entropy=rng.random(codebook_size) * np.log(codebook_size),
                 frames=np.ones(codebook_size, dtype=np.int64), codec=codec).save(str(path))
    return str(path)
