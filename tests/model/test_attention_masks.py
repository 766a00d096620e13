"""The mask forms of one rule give the dense rule's outputs: banded SDPA (windowed stacks on CPU), values and
gradients; FlexAttention block masks built at block granularity (CUDA), and flex compiles a bounded number of times
however many token lengths the batches take (never the unfused fallback)."""

import random

import torch
from torch._dynamo.testing import CompileCounter
from torch.nn.attention.flex_attention import flex_attention

from lst_train.model import attention_mask, build_model

from helpers import debug_config, random_stream, static_partition


def _documents(length: int, rate: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.cumsum((torch.rand(length, generator=generator) < rate).long(), 0)


def test_banded_attention_equals_the_dense_mask_in_values_and_gradients():
    for length, window in ((512, 64), (300, 64), (17, 4), (40, 1)):  # whole blocks, a cut last block, W = 1
        doc_ids = torch.stack([_documents(length, 0.02, 0), _documents(length, 0.2, 1), torch.zeros(length).long()])
        q, k, v = (torch.randn(3, 2, length, 8, requires_grad=True) for _ in range(3))
        dense = attention_mask.masked_attention(q, k, v, attention_mask.causal_document_mask(doc_ids, window))
        banded = attention_mask.masked_attention(q, k, v, attention_mask.causal_document_banded_mask(doc_ids, window))
        torch.testing.assert_close(banded, dense, atol=1e-5, rtol=1e-5)
        weights = torch.randn_like(dense)
        for a, b in zip(torch.autograd.grad((dense * weights).sum(), (q, k, v)),
                        torch.autograd.grad((banded * weights).sum(), (q, k, v))):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    doc_ids = torch.zeros(1, 256).long()
    assert isinstance(attention_mask.self_attention_mask(doc_ids, 64, "auto"), attention_mask.BandedMask)
    assert isinstance(attention_mask.self_attention_mask(doc_ids, 65, "sdpa"), torch.Tensor), "W > L/4: dense"
    assert isinstance(attention_mask.self_attention_mask(doc_ids, 0, "auto"), torch.Tensor)


def test_block_classes_are_exact_where_full_and_cover_every_allowed_pair():
    length = 700  # 6 blocks of 128, the last one cut by the row's end
    doc_ids = torch.stack([_documents(length, 0.004, 0), _documents(length, 0.02, 1), torch.zeros(length).long()])
    block = torch.arange(length) // attention_mask.FLEX_BLOCK
    for window in (0, 100, 300):
        allowed = attention_mask.causal_document_mask(doc_ids, window)[:, 0]
        partial, full = attention_mask.block_classes(doc_ids, window)
        assert not (partial & full).any()
        full_pairs = full[:, block][:, :, block]
        partial_pairs = partial[:, block][:, :, block]
        assert allowed[full_pairs].all(), "a full block holds only allowed pairs"
        assert not (allowed & ~full_pairs & ~partial_pairs).any(), "every allowed pair is in a computed block"
        if window != 100:
            assert full.any(), "whole blocks inside one document skip the rule"
        q, k, v = torch.randn(3, 3, 2, length, 16).unbind(0)
        torch.testing.assert_close(
            flex_attention(q, k, v, block_mask=attention_mask.causal_document_block_mask(doc_ids, window)),
            torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None]),
            atol=1e-5, rtol=1e-5)


def test_flex_compiles_a_bounded_number_of_times_over_many_lengths(monkeypatch):
    """The real entry point (the LST forward with model.attention=flex), routed through the compiled flex path with a
    counting eager backend; hitting dynamo's recompile limit (the unfused fallback) raises instead of falling back."""
    counter = CompileCounter()
    monkeypatch.setattr(attention_mask, "CPU_FLEX_BACKEND", counter)
    monkeypatch.setattr(attention_mask, "_compiled_flex", {})
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    torch._dynamo.reset()
    cfg = debug_config("lst", "model.attention=flex", "model.encoder.window=40", "model.decoder.window=40")
    model = build_model(cfg.model, seed=0).eval()
    rng = random.Random(0)
    lengths = [320 + 37 * i for i in range(14)]  # every stack spans >= 2 blocks of 128 (as at real sizes)
    rng.shuffle(lengths)
    with torch.no_grad():
        for length in lengths:
            rows = [random_stream(model.vocab, rng, length) for _ in range(2)]
            model(torch.tensor(rows), *static_partition(rows, model.vocab, cfg.patching.size))
    # One graph per head count (local stacks 2 heads, global 4), whatever the 14 lengths.
    assert counter.frame_count == 2, counter.frame_count
