"""The exact FLOP counter against torch's FlopCounterMode and against brute-force pair counts."""

import random
from collections import Counter

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lst_train.flops import attention_pairs, batch_flops, param_counts
from lst_train.model import build_model
from lst_train.model.layers import SelfAttention
from lst_train.model.layout import PatchLayout
from lst_train.patching import pad_patch_lengths

from helpers import debug_config, random_document, random_partition

LINEAR_OPS = ("mm", "addmm")


def _batch(vocab, rng, length=48, rows=2):
    tokens, partitions = [], []
    for _ in range(rows):
        row = [vocab.bos]
        while len(row) < length:
            row += random_document(vocab, rng, rng.randint(1, 4), first_marker=rng.random() < 0.5)
        row = row[:length]
        tokens.append(row)
        partitions.append(random_partition(row, vocab, rng, 6))
    return torch.tensor(tokens), pad_patch_lengths(partitions)


def _measure(model, tokens, patch_lengths, backward):
    """FlopCounterMode's counts: (linear matmuls, matmuls inside self-attention modules' SDPA)."""
    attention_names = {name for name, m in model.named_modules() if isinstance(m, SelfAttention)}
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(tokens, patch_lengths)
        if backward:
            logits.sum().backward()
    linear = sum(n for op, n in counter.get_flop_counts()["Global"].items() if str(op).split(".")[-1] in LINEAR_OPS)
    prefix = type(model).__name__ + "."
    sdpa = sum(n for name, ops in counter.get_flop_counts().items() if name.removeprefix(prefix) in attention_names
               for op, n in ops.items() if str(op).split(".")[-1] == "bmm")
    return linear, sdpa


@pytest.mark.parametrize("arch", ["lst", "baseline"])
@pytest.mark.parametrize("backward", [False, True])
def test_counter_matches_flop_counter_mode(arch, backward):
    cfg = debug_config(arch)
    model = build_model(cfg.model)
    tokens, patch_lengths = _batch(model.vocab, random.Random(0))
    measured_linear, measured_sdpa = _measure(model, tokens, patch_lengths if arch == "lst" else None, backward)
    counted = batch_flops(cfg.model, tokens, patch_lengths).forward
    factor = 3 if backward else 1
    assert measured_linear > 0 and measured_sdpa > 0
    assert factor * counted.linear == measured_linear
    assert factor * counted.attention_dense == measured_sdpa


def _brute_pairs(doc_ids, window):
    n = len(doc_ids)
    return sum(1 for i in range(n) for j in range(i + 1)
               if doc_ids[i] == doc_ids[j] and (window == 0 or i - j < window))


@pytest.mark.parametrize("window", [0, 1, 3, 8])
def test_attention_pairs_equal_brute_force(window):
    rng = random.Random(window)
    for _ in range(20):
        docs = [rng.randint(1, 12) for _ in range(rng.randint(1, 4))]
        doc_ids = [i for i, n in enumerate(docs) for _ in range(n)]
        assert attention_pairs(docs, window) == _brute_pairs(doc_ids, window)


def test_cross_attention_flops_count_the_slots_really_read():
    cfg = debug_config("lst", "model.unpool_window=3")
    vocab = build_model(cfg.model).vocab
    tokens, patch_lengths = _batch(vocab, random.Random(1), length=30, rows=1)
    counted = batch_flops(cfg.model, tokens, patch_lengths).stacks["decoder"].cross_attention
    layout = PatchLayout.build(tokens, patch_lengths, vocab.eos, 3)
    doc_of_patch = layout.patch_doc_ids[0].tolist()
    ends = patch_lengths[0].cumsum(0).tolist()
    reads = 0
    for t, doc in enumerate(layout.tokens.doc_ids[0].tolist()):
        # Brute force: real patches that end at or before t+1, in t's document; the newest 3 of them.
        readable = [j for j, end in enumerate(ends) if end <= t + 1 and patch_lengths[0, j] > 0
                    and doc_of_patch[j] == doc]
        reads += len(readable[-3:])
    d, k = cfg.model.decoder.dim, cfg.model.patch_slots
    assert counted == 4 * d * k * cfg.model.decoder.n_layers * reads


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_param_counts_equal_the_built_model(arch):
    cfg = debug_config(arch)
    with torch.device("meta"):
        model = build_model(cfg.model)
    per_child = Counter()
    for name, p in model.named_parameters():
        per_child[name.split(".")[0]] += p.numel()
    counts = param_counts(cfg.model)
    assert counts.pop("total") == sum(per_child.values())
    assert counts == dict(per_child)
