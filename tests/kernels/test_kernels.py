"""lst_kernels ops on the Triton path against the pure-torch reference: outputs and gradients, the debug model,
torch.compile, backend selection. Without CUDA the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set
by conftest.py before anything imports triton); with CUDA they run on the device."""

import random
from collections import Counter

import pytest
import torch

import lst_kernels
from lst_kernels import ops, reference

from helpers import debug_config, random_document, random_partition
from lst_train.config import ConfigError
from lst_train.loss import labels_from_tokens, next_token_loss_sums
from lst_train.model import build_model
from lst_train.patching import pad_patch_lengths

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LAUNCHERS = ("segment_pool_fwd", "segment_pool_bwd", "segment_cross_attention_fwd", "segment_cross_attention_bwd",
             "range_cross_attention_fwd", "range_cross_attention_bwd")
# Both paths compute in fp32 and round once to the output dtype: they differ by about one ulp of the output.
TOLERANCES = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.float16: dict(atol=4e-3, rtol=4e-3),
              torch.bfloat16: dict(atol=3e-2, rtol=2e-2)}
DTYPES = list(TOLERANCES)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def launches(monkeypatch):
    """Force the Triton backend and count the launcher calls (proof that the Triton path ran)."""
    previous = lst_kernels.get_backend()
    lst_kernels.set_backend("triton")
    kernels = ops._triton()
    counts: Counter = Counter()

    def spy(name):
        launcher = getattr(kernels, name)
        return lambda *args: (counts.update([name]), launcher(*args))[1]

    for name in LAUNCHERS:
        monkeypatch.setattr(kernels, name, spy(name))
    yield counts
    lst_kernels.set_backend(previous)


def ragged_lengths(seed: int, rows: int = 3) -> torch.Tensor:
    """Rows of different patch counts, padded with empty segments: 1-token patches, short patches, one 64-token
    patch."""
    rng = random.Random(seed)
    per_row = [[1] + [rng.choice([1, 1, rng.randint(2, 9)]) for _ in range(rng.randint(4, 12))] for _ in range(rows)]
    per_row[0].insert(2, 64)
    width = max(map(len, per_row)) + 1
    return torch.tensor([n for row in per_row for n in row + [0] * (width - len(row))], device=DEVICE)


def ranges(n_tokens: int, n_segments: int, window: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random first/last segment indices, some ranges empty (first > last)."""
    gen = torch.Generator().manual_seed(seed)
    last = torch.randint(0, n_segments, (n_tokens,), generator=gen)
    first = torch.maximum(last - window + 1, torch.randint(0, n_segments, (n_tokens,), generator=gen))
    first[:3] = last[:3] + 1
    return first.to(DEVICE), last.to(DEVICE)


def assert_same_forward_and_grads(op, ref, inputs, dtype):
    """op(*inputs) and ref(*inputs) agree, and so do their gradients for one random output gradient."""
    ours = [t.detach().clone().requires_grad_() for t in inputs]
    theirs = [t.detach().clone().requires_grad_() for t in inputs]
    out, expected = op(*ours), ref(*theirs)
    assert out.dtype == dtype and out.shape == expected.shape
    torch.testing.assert_close(out.float(), expected.float(), **TOLERANCES[dtype])
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    for a, b in zip(ours, theirs):
        assert a.grad.dtype == dtype
        torch.testing.assert_close(a.grad.float(), b.grad.float(), **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,dim", [("max", 40), ("mean", 40), ("max", 160)])
def test_segment_pool(launches, mode, dim, dtype):
    lengths = ragged_lengths(0)
    n_tokens = int(lengths.sum())
    # Distinct small integers per column: exact in every dtype, so no ties (ties have their own test).
    x = torch.stack([torch.randperm(n_tokens) for _ in range(dim)], 1).to(DEVICE, dtype) / 16
    assert_same_forward_and_grads(lambda x: lst_kernels.segment_pool(x, lengths, mode),
                                  lambda x: reference.segment_pool(x, lengths, mode), [x], dtype)
    assert launches["segment_pool_fwd"] == 1 and launches["segment_pool_bwd"] == 1


def test_segment_pool_max_splits_ties_evenly(launches):
    lengths = torch.tensor([1, 4, 0, 2], device=DEVICE)
    x = torch.tensor([[1.0], [3.0], [3.0], [3.0], [3.0], [-2.0], [5.0]], device=DEVICE, requires_grad=True)
    grad = torch.tensor([[1.0], [-2.0], [7.0], [4.0]], device=DEVICE)
    lst_kernels.segment_pool(x, lengths, "max").backward(grad)
    assert x.grad.flatten().tolist() == [1.0, -0.5, -0.5, -0.5, -0.5, 0.0, 4.0]
    x_ref = x.detach().clone().requires_grad_()
    reference.segment_pool(x_ref, lengths, "max").backward(grad)
    assert torch.equal(x_ref.grad, x.grad), "the reference splits ties the same way"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n_slots,head_dim", [(1, 16), (3, 12)])
def test_segment_cross_attention(launches, n_slots, head_dim, dtype):
    lengths = ragged_lengths(1)
    n_tokens, heads = int(lengths.sum()), 2
    q = torch.randn(len(lengths), n_slots, heads, head_dim, device=DEVICE, dtype=dtype)
    key, value = (torch.randn(n_tokens, heads, head_dim, device=DEVICE, dtype=dtype) for _ in range(2))
    assert_same_forward_and_grads(lambda *a: lst_kernels.segment_cross_attention(*a, lengths),
                                  lambda *a: reference.segment_cross_attention(*a, lengths), [q, key, value], dtype)
    assert launches["segment_cross_attention_fwd"] == 1 and launches["segment_cross_attention_bwd"] == 1


def layout_ranges(n_tokens: int, n_segments: int, window: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """first/last as the layout makes them: never decreasing, at most `window` wide, three documents (a token at a
    document's start reads nothing: first > last)."""
    gen = torch.Generator().manual_seed(seed)
    last = torch.randint(-1, n_segments, (n_tokens,), generator=gen).sort().values
    doc_first = torch.zeros_like(last)
    for cut in (n_tokens // 3, 2 * n_tokens // 3):
        doc_first[cut:] = last[cut] + 1
    return torch.maximum(last - window + 1, doc_first).to(DEVICE), last.to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n_slots,window,deterministic", [(2, 1, False), (3, 3, False), (2, 64, False),
                                                          (2, 1, True), (3, 3, True), (1, 64, True)])
def test_range_cross_attention(launches, n_slots, window, deterministic, dtype):
    """Windows up to 64 segments (several blocks of the kernel's window loop); the deterministic backward (no
    atomics) on layout-ordered ranges, the default one on any ranges."""
    lengths = ragged_lengths(2)
    n_tokens, n_segments, heads, head_dim = int(lengths.sum()), len(lengths), 2, 16
    make_ranges = layout_ranges if deterministic else ranges
    first, last = make_ranges(n_tokens, n_segments, window, seed=window)
    assert (last - first + 1).max() >= min(window, 9), "the ranges use the window"
    q = torch.randn(n_tokens, heads, head_dim, device=DEVICE, dtype=dtype)
    key, value = (torch.randn(n_segments, n_slots, heads, head_dim, device=DEVICE, dtype=dtype) for _ in range(2))
    op = lambda *a: lst_kernels.range_cross_attention(*a, first, last, window, deterministic=deterministic)
    assert_same_forward_and_grads(op, lambda *a: reference.range_cross_attention(*a, first, last, window),
                                  [q, key, value], dtype)
    assert launches["range_cross_attention_fwd"] == 1 and launches["range_cross_attention_bwd"] == 1


def test_deterministic_flag_selects_the_backward_without_atomics(launches, monkeypatch):
    """deterministic=None follows torch.use_deterministic_algorithms; repeated backwards are bitwise equal."""
    lengths = ragged_lengths(3)
    n_tokens, n_segments = int(lengths.sum()), len(lengths)
    first, last = layout_ranges(n_tokens, n_segments, 4, seed=3)
    q = torch.randn(n_tokens, 2, 8, device=DEVICE, requires_grad=True)
    key = torch.randn(n_segments, 2, 2, 8, device=DEVICE, requires_grad=True)
    calls = []
    kernels = ops._triton()
    launcher = kernels.range_cross_attention_bwd
    monkeypatch.setattr(kernels, "range_cross_attention_bwd", lambda *a: (calls.append(a[-1]), launcher(*a))[1])
    grads = []
    try:
        for flag in (True, True, False):
            torch.use_deterministic_algorithms(flag)
            out = lst_kernels.range_cross_attention(q, key, key, first, last, 4)
            grads.append(torch.autograd.grad(out.square().sum(), (q, key)))
    finally:
        torch.use_deterministic_algorithms(False)
    assert calls == [True, True, False]
    assert all(torch.equal(a, b) for a, b in zip(grads[0], grads[1]))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads[0], grads[2]))


def _packed_batch(vocab, rows: int = 2, length: int = 40):
    """Rows packed with several short documents, speech cut into random patches of 1..6 frames."""
    rng = random.Random(0)
    token_rows = []
    for _ in range(rows):
        row = [vocab.bos]
        while len(row) < length:
            row += random_document(vocab, rng, rng.randint(1, 4))
        token_rows.append(row[:length])
    patch_lengths = pad_patch_lengths([random_partition(row, vocab, rng, 6) for row in token_rows])
    return torch.tensor(token_rows), patch_lengths


@pytest.mark.parametrize("extra", [[], ["model.kernels_deterministic=true", "model.unpool_window=4"]],
                         ids=["default", "deterministic-window4"])
def test_debug_model_same_loss_and_grads_through_kernels(launches, extra):
    """Two models with the same weights, model.kernels=triton and =reference: the backend is each module's own.
    Deterministic: the layout's unpooling ranges meet its contract (first and last never decrease)."""
    results = []
    for backend in ("triton", "reference"):
        model = build_model(debug_config("lst", f"model.kernels={backend}", *extra).model, seed=0).to(DEVICE)
        tokens, patch_lengths = (t.to(DEVICE) for t in _packed_batch(model.vocab))
        labels = labels_from_tokens(tokens, model.vocab)
        loss = next_token_loss_sums(model(tokens, patch_lengths), labels, model.vocab).mean()
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        if backend == "triton":
            assert set(launches) == set(LAUNCHERS)
            triton_launches = sum(launches.values())
    (loss, grads), (ref_loss, ref_grads) = results
    # The process default is "triton" here (the fixture): the reference model's own backend still won.
    assert sum(launches.values()) == triton_launches
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def _three_ops(x, q, key, value, tq, skey, svalue, lengths, first, last, deterministic=None):
    return (lst_kernels.segment_pool(x, lengths, "max").sum()
            + lst_kernels.segment_cross_attention(q, key, value, lengths).square().sum()
            + lst_kernels.range_cross_attention(tq, skey, svalue, first, last, 2,
                                                deterministic=deterministic).square().sum())


def _op_inputs(n_slots: int = 2, heads: int = 2, head_dim: int = 8, dtype: torch.dtype = torch.float32):
    lengths = ragged_lengths(3)
    n_tokens, n_segments = int(lengths.sum()), len(lengths)
    first, last = ranges(n_tokens, n_segments, 2, seed=3)
    shapes = [(n_tokens, heads * head_dim), (n_segments, n_slots, heads, head_dim), (n_tokens, heads, head_dim),
              (n_tokens, heads, head_dim), (n_tokens, heads, head_dim), (n_segments, n_slots, heads, head_dim),
              (n_segments, n_slots, heads, head_dim)]
    tensors = [torch.randn(s, device=DEVICE, dtype=dtype, requires_grad=True) for s in shapes]
    return tensors, (lengths, first, last)


def _compiled_matches_eager(backend: str) -> None:
    tensors, index = _op_inputs()
    eager = torch.autograd.grad(_three_ops(*tensors, *index), tensors)
    torch._dynamo.reset()
    compiled = torch.compile(_three_ops, backend=backend, fullgraph=True)
    for a, b in zip(torch.autograd.grad(compiled(*tensors, *index), tensors), eager):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_compile_traces_through_the_reference_backend():
    previous = lst_kernels.get_backend()
    lst_kernels.set_backend("reference")
    try:
        _compiled_matches_eager("aot_eager")
        tensors, (lengths, first, last) = _op_inputs()
        x, q, key, value, tq, skey, svalue = tensors
        torch.library.opcheck(ops.segment_pool, (x, lengths, "mean", "reference"))
        torch.library.opcheck(ops.segment_cross_attention, (q, key, value, lengths, "reference"))
        torch.library.opcheck(ops.range_cross_attention, (tq, skey, svalue, first, last, 2, "reference", False))
    finally:
        lst_kernels.set_backend(previous)


def test_backend_selection(monkeypatch):
    previous = lst_kernels.get_backend()
    x = torch.zeros(2, 3)
    try:
        lst_kernels.set_backend("auto")
        assert lst_kernels.resolve_backend(x) == "reference"
        lst_kernels.set_backend("reference")
        assert lst_kernels.resolve_backend(x) == "reference"
        lst_kernels.set_backend("triton")
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            lst_kernels.segment_pool(x, torch.tensor([2]), "max")
        with pytest.raises(ValueError, match="backend must be one of"):
            lst_kernels.set_backend("cuda")
        # A call's own backend wins over the process default (lst_train's modules pass model.kernels).
        assert lst_kernels.resolve_backend(x, "reference") == "reference"
        lst_kernels.set_backend("reference")
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            lst_kernels.segment_pool(x, torch.tensor([2]), "max", backend="triton")
    finally:
        lst_kernels.set_backend(previous)
    with pytest.raises(ConfigError, match="^model.kernels: "):
        debug_config("lst", "model.kernels=fast")


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_mis_shaped_inputs_are_refused_before_any_kernel_runs(launches, backend):
    """A Triton kernel reads whatever memory a mis-shaped tensor has; the ops check shapes first (metadata only)."""
    lengths, first = torch.tensor([2, 3]), torch.tensor([0, 0, 0, 1, 1])
    q_slots, tokens = torch.randn(2, 2, 1, 4), torch.randn(5, 1, 4)
    with pytest.raises(ValueError, match="^segment_cross_attention: expected"):
        lst_kernels.segment_cross_attention(q_slots, tokens, q_slots, lengths, backend=backend)
    with pytest.raises(ValueError, match="^range_cross_attention: expected .* got shapes \\(5, 1, 4\\), \\(2, 2, 1, 4\\), "
                                         "\\(5, 1, 4\\)"):
        lst_kernels.range_cross_attention(tokens, q_slots, tokens, first, first, 1, backend=backend)
    with pytest.raises(ValueError, match="^segment_pool: expected"):
        lst_kernels.segment_pool(tokens, lengths, "max", backend=backend)


@needs_cuda
def test_gpu_compile_with_triton_kernels(launches):
    _compiled_matches_eager("inductor")


def assert_as_close_as_the_reference(op, ref, inputs, dtype):
    """At realistic sizes a fixed tolerance confuses rounding with error: both op and ref run in `dtype` and are
    compared with ref in float32 (the oracle); op may be off by at most twice the reference's own rounding error
    plus the dtype's tolerance, forward and backward. The assertion prints both errors."""
    grad = None
    results = []
    for fn, cast in ((op, dtype), (ref, dtype), (ref, torch.float32)):
        leaves = [t.detach().to(cast).requires_grad_() for t in inputs]
        out = fn(*leaves)
        grad = torch.randn_like(out, dtype=torch.float32) if grad is None else grad
        out.backward(grad.to(out.dtype))
        results.append([out.float()] + [t.grad.float() for t in leaves])
    tol = TOLERANCES[dtype]["atol"]
    for name, ours, theirs, oracle in zip(["output"] + [f"grad {i}" for i in range(len(inputs))], *results):
        our_error, ref_error = (ours - oracle).abs().max().item(), (theirs - oracle).abs().max().item()
        assert our_error <= 2 * ref_error + tol * oracle.abs().max().item(), \
            f"{name}: kernel max error {our_error:.3g} vs the reference's own {ref_error:.3g} (float32 oracle)"


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_gpu_larger_shapes(launches, dtype):
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 17, (700,), generator=gen)
    lengths[::50] = 64
    lengths[1::97] = 0
    lengths = lengths.to(DEVICE)
    n_tokens, n_segments, n_slots, heads, head_dim = int(lengths.sum()), len(lengths), 2, 16, 64
    x = torch.randn(n_tokens, heads * head_dim, device=DEVICE, dtype=dtype)
    assert_as_close_as_the_reference(lambda x: lst_kernels.segment_pool(x, lengths, "mean"),
                                     lambda x: reference.segment_pool(x, lengths, "mean"), [x], dtype)
    q = torch.randn(n_segments, n_slots, heads, head_dim, device=DEVICE, dtype=dtype)
    key, value = (torch.randn(n_tokens, heads, head_dim, device=DEVICE, dtype=dtype) for _ in range(2))
    assert_as_close_as_the_reference(lambda *a: lst_kernels.segment_cross_attention(*a, lengths),
                                     lambda *a: reference.segment_cross_attention(*a, lengths), [q, key, value], dtype)
    first, last = ranges(n_tokens, n_segments, 2, seed=0)
    tq = torch.randn(n_tokens, heads, head_dim, device=DEVICE, dtype=dtype)
    slot_key, slot_value = (torch.randn(n_segments, n_slots, heads, head_dim, device=DEVICE, dtype=dtype)
                            for _ in range(2))
    assert_as_close_as_the_reference(lambda *a: lst_kernels.range_cross_attention(*a, first, last, 2),
                                     lambda *a: reference.range_cross_attention(*a, first, last, 2),
                                     [tq, slot_key, slot_value], dtype)


@needs_cuda
@pytest.mark.parametrize("window", [8, 64])
def test_gpu_wide_unpooling_windows_and_bitwise_deterministic_backward(launches, window):
    """Realistic sizes, bf16: windows of 8 and 64 patches on layout-ordered ranges; the deterministic backward
    gives the same bits twice (the atomic one need not) and both are as close to the float32 oracle as the
    reference is."""
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 9, (2000,), generator=gen).to(DEVICE)
    n_tokens, n_segments, heads, head_dim = int(lengths.sum()), len(lengths), 16, 64
    first, last = layout_ranges(n_tokens, n_segments, window, seed=1)
    tq = torch.randn(n_tokens, heads, head_dim, device=DEVICE, dtype=torch.bfloat16)
    slots = torch.randn(n_segments, 2, heads, head_dim, device=DEVICE, dtype=torch.bfloat16)
    for deterministic in (False, True):
        assert_as_close_as_the_reference(
            lambda *a: lst_kernels.range_cross_attention(*a, first, last, window, deterministic=deterministic),
            lambda *a: reference.range_cross_attention(*a, first, last, window), [tq, slots, slots], torch.bfloat16)
    grads = []
    for _ in range(2):
        leaves = [tq.clone().requires_grad_(), slots.clone().requires_grad_()]
        out = lst_kernels.range_cross_attention(leaves[0], leaves[1], leaves[1], first, last, window,
                                                deterministic=True)
        grads.append(torch.autograd.grad(out.float().square().sum(), leaves))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@needs_cuda
@pytest.mark.parametrize("deterministic", [False, True])
def test_gpu_ops_never_synchronize_the_host(launches, deterministic):
    """Forward and backward of the three ops on a batch, under CUDA's sync debug mode set to raise: no .item(),
    no data-dependent shapes, so they can run inside CUDA graphs."""
    tensors, (lengths, _, _) = _op_inputs()
    first, last = layout_ranges(int(lengths.sum()), len(lengths), 2, seed=3)  # the deterministic contract
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _three_ops(*tensors, lengths, first, last, deterministic).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(t.grad is not None for t in tensors)


@needs_cuda
def test_gpu_ops_replay_in_cuda_graphs(launches):
    """The three ops, forward and backward, captured once in CUDA graphs (torch.cuda.make_graphed_callables) and
    replayed on new values: the same outputs and gradients as eager calls."""
    tensors, (lengths, first, last) = _op_inputs()
    graphed = torch.cuda.make_graphed_callables(
        lambda *leaves: _three_ops(*leaves, lengths, first, last).reshape(1), tuple(tensors))
    fresh = [torch.randn_like(t).requires_grad_() for t in tensors]
    replayed = graphed(*fresh)
    replayed_grads = torch.autograd.grad(replayed.sum(), fresh)
    eager = _three_ops(*fresh, lengths, first, last)
    torch.testing.assert_close(replayed[0], eager)
    for a, b in zip(replayed_grads, torch.autograd.grad(eager, fresh)):
        torch.testing.assert_close(a, b)
