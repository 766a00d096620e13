"""lst_kernels.reference against brute-force Python loops, plus float64 gradchecks."""

import math
import random

import pytest
import torch

from lst_kernels.reference import range_cross_attention, segment_cross_attention, segment_pool


def _ragged_lengths(rng, n_segments, max_len, empty_tail=2):
    lengths = [rng.randint(1, max_len) for _ in range(n_segments)]
    lengths[0] = 1
    return torch.tensor(lengths + [0] * empty_tail)


def _softmax_attend(q, keys, values):
    """One query [H, dh] over a list of (key [H, dh], value [H, dh]): [H, dh]; zeros when the list is empty."""
    if not keys:
        return torch.zeros_like(q)
    k = torch.stack(keys)  # [n, H, dh]
    v = torch.stack(values)
    weights = torch.softmax((k * q).sum(-1) / math.sqrt(q.shape[-1]), dim=0)  # [n, H]
    return (weights[..., None] * v).sum(0)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_segment_pool_equals_loop(mode):
    rng = random.Random(0)
    lengths = _ragged_lengths(rng, 9, 7)
    x = torch.randn(int(lengths.sum()), 5)
    out = segment_pool(x, lengths, mode)
    start = 0
    for s, n in enumerate(lengths.tolist()):
        rows = x[start: start + n]
        expected = torch.zeros(5) if n == 0 else (rows.max(0).values if mode == "max" else rows.mean(0))
        assert torch.allclose(out[s], expected, atol=1e-6)
        start += n


def test_segment_cross_attention_equals_loop():
    rng = random.Random(1)
    lengths = _ragged_lengths(rng, 8, 6)
    n_tokens, k, heads, dh = int(lengths.sum()), 3, 2, 4
    q = torch.randn(len(lengths), k, heads, dh)
    key, value = torch.randn(n_tokens, heads, dh), torch.randn(n_tokens, heads, dh)
    out = segment_cross_attention(q, key, value, lengths)
    start = 0
    for s, n in enumerate(lengths.tolist()):
        for slot in range(k):
            expected = _softmax_attend(q[s, slot], list(key[start: start + n]), list(value[start: start + n]))
            assert torch.allclose(out[s, slot], expected, atol=1e-5)
        start += n


@pytest.mark.parametrize("window", [1, 2, 4])
def test_range_cross_attention_equals_loop(window):
    n_segments, n_tokens, k, heads, dh = 7, 15, 2, 2, 4
    torch.manual_seed(window)
    last = torch.randint(0, n_segments, (n_tokens,))
    first = torch.maximum(last - window + 1, torch.randint(0, n_segments, (n_tokens,)))  # some ranges empty
    q = torch.randn(n_tokens, heads, dh)
    key, value = torch.randn(n_segments, k, heads, dh), torch.randn(n_segments, k, heads, dh)
    out = range_cross_attention(q, key, value, first, last, window)
    assert (first > last).any() and (first <= last).any()
    for t in range(n_tokens):
        segs = range(int(first[t]), int(last[t]) + 1)
        keys = [key[s, j] for s in segs for j in range(k)]
        values = [value[s, j] for s in segs for j in range(k)]
        assert torch.allclose(out[t], _softmax_attend(q[t], keys, values), atol=1e-5)


def test_gradcheck_float64():
    rng = random.Random(3)
    lengths = _ragged_lengths(rng, 5, 4, empty_tail=1)
    n_tokens = int(lengths.sum())
    opts = dict(dtype=torch.float64, requires_grad=True)
    x = torch.randn(n_tokens, 3, **opts)
    for mode in ("max", "mean"):
        assert torch.autograd.gradcheck(lambda x: segment_pool(x, lengths, mode), (x,))
    q = torch.randn(len(lengths), 2, 2, 3, **opts)
    key, value = torch.randn(n_tokens, 2, 3, **opts), torch.randn(n_tokens, 2, 3, **opts)
    assert torch.autograd.gradcheck(lambda *a: segment_cross_attention(*a, lengths), (q, key, value))
    tq = torch.randn(n_tokens, 2, 3, **opts)
    skey, svalue = torch.randn(len(lengths), 2, 2, 3, **opts), torch.randn(len(lengths), 2, 2, 3, **opts)
    last = torch.randint(0, len(lengths), (n_tokens,))
    first = last - 1
    first[0] = last[0] + 1  # one token reads nothing
    assert torch.autograd.gradcheck(lambda *a: range_cross_attention(*a, first, last, 2), (tq, skey, svalue))


def test_low_precision_inputs_keep_their_dtype_and_stay_close():
    lengths = torch.tensor([1, 3, 2, 0])
    x = torch.randn(6, 2, 4)
    q = torch.randn(4, 2, 2, 4)
    out32 = segment_cross_attention(q, x, x, lengths)
    out16 = segment_cross_attention(q.bfloat16(), x.bfloat16(), x.bfloat16(), lengths)
    assert out16.dtype == torch.bfloat16
    assert torch.allclose(out16.float(), out32, atol=3e-2)


def test_max_pool_gradient_goes_whole_to_a_unique_max_even_at_zero():
    x = torch.tensor([[0.0], [-1.0], [2.0], [-3.0]], requires_grad=True)
    segment_pool(x, torch.tensor([1, 2, 0, 1]), "max").backward(torch.tensor([[5.0], [7.0], [9.0], [-4.0]]))
    assert x.grad.flatten().tolist() == [5.0, 0.0, 7.0, -4.0]
