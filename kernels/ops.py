"""The three patch ops as torch.library custom ops (namespace lst_kernels): Triton kernels or the reference.

Each op has a fake implementation (torch.compile traces through it) and an autograd formula that calls a backward
op: the Triton backward kernel on the Triton path, the reference's own autograd (torch.func.vjp) otherwise. The
forward picks the backend (`resolve_backend`) and the backward follows the forward's choice.

Backend: each call may name one ("auto" | "triton" | "reference": lst_train's modules pass their configured one);
without it the process default applies (`set_backend`, or the environment variable LST_KERNELS_BACKEND, "auto"
if unset). "auto" runs Triton on CUDA tensors and the reference elsewhere; "triton" on CPU tensors needs
TRITON_INTERPRET=1 (Triton's interpreter, for tests). The custom ops take the resolved name as an argument.
"""

import os
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor

from lst_kernels import reference

BACKENDS = ("auto", "triton", "reference")
_backend = "auto"


def _check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"lst_kernels backend must be one of {BACKENDS}, got {name!r}")


def set_backend(name: str) -> None:
    """Choose the default backend of lst_kernels ops in this process (calls that name one keep theirs)."""
    global _backend
    _check_backend(name)
    _backend = name


def get_backend() -> str:
    """The backend set by set_backend (or LST_KERNELS_BACKEND)."""
    return _backend


def resolve_backend(tensor: Tensor, backend: str | None = None) -> str:
    """Which implementation an op on `tensor` runs: 'triton' or 'reference', for `backend` (None: the default)."""
    backend = _backend if backend is None else backend
    _check_backend(backend)
    if backend == "reference" or (backend == "auto" and not tensor.is_cuda):
        return "reference"
    if not tensor.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(f"lst_kernels backend 'triton' needs CUDA tensors (got {tensor.device}), or "
                           "TRITON_INTERPRET=1 set before lst_kernels runs its first Triton op")
    return "triton"


def _triton() -> ModuleType:
    """The kernels, imported on first use: CPU-only runs never need triton, and TRITON_INTERPRET is read when
    the kernels are defined."""
    from lst_kernels import triton_kernels

    return triton_kernels


def _reference_vjp(fn: Callable[..., Tensor], grad: Tensor, *inputs: Tensor) -> tuple[Tensor, ...]:
    """Gradients of the reference op `fn` at `inputs` (torch.func works inside a custom op, autograd does not)."""
    _, vjp = torch.func.vjp(fn, *inputs)
    return vjp(grad)


def _check_mode(mode: str) -> None:
    if mode not in ("max", "mean"):
        raise ValueError(f"segment_pool mode must be 'max' or 'mean', got {mode!r}")


# segment_pool ---------------------------------------------------------------------------------------------------

@torch.library.custom_op("lst_kernels::segment_pool", mutates_args=())
def segment_pool(x: Tensor, seg_lengths: Tensor, mode: str, backend: str) -> Tensor:
    """Max or mean of the rows of `x` [N, d] over each segment -> [S, d]; empty segments give zeros."""
    _check_mode(mode)
    if backend == "triton":
        return _triton().segment_pool_fwd(x.contiguous(), seg_lengths.contiguous(), mode)
    return reference.segment_pool(x, seg_lengths, mode)


@segment_pool.register_fake
def _(x: Tensor, seg_lengths: Tensor, mode: str, backend: str) -> Tensor:
    return x.new_empty(seg_lengths.shape[0], x.shape[1])


@torch.library.custom_op("lst_kernels::segment_pool_backward", mutates_args=())
def segment_pool_backward(grad: Tensor, x: Tensor, seg_lengths: Tensor, mode: str, backend: str) -> Tensor:
    if backend == "triton":
        return _triton().segment_pool_bwd(grad.contiguous(), x.contiguous(), seg_lengths.contiguous(), mode)
    return _reference_vjp(lambda x: reference.segment_pool(x, seg_lengths, mode), grad, x)[0]


@segment_pool_backward.register_fake
def _(grad: Tensor, x: Tensor, seg_lengths: Tensor, mode: str, backend: str) -> Tensor:
    return torch.empty_like(x)


def _pool_setup(ctx, inputs: tuple, output: Tensor) -> None:
    x, seg_lengths, mode, backend = inputs
    ctx.save_for_backward(x, seg_lengths)
    ctx.mode, ctx.backend = mode, backend


def _pool_backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
    x, seg_lengths = ctx.saved_tensors
    return segment_pool_backward(grad, x, seg_lengths, ctx.mode, ctx.backend), None, None, None


segment_pool.register_autograd(_pool_backward, setup_context=_pool_setup)


# segment_cross_attention ----------------------------------------------------------------------------------------

@torch.library.custom_op("lst_kernels::segment_cross_attention", mutates_args=())
def segment_cross_attention(q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor, backend: str) -> Tensor:
    """The k query slots q [S, k, H, dh] of each segment attend to the tokens (key, value [N, H, dh]) of their
    own segment only -> [S, k, H, dh]."""
    if backend == "triton":
        return _triton().segment_cross_attention_fwd(q.contiguous(), key.contiguous(), value.contiguous(),
                                                     seg_lengths.contiguous())
    return reference.segment_cross_attention(q, key, value, seg_lengths)


@segment_cross_attention.register_fake
def _(q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor, backend: str) -> Tensor:
    return torch.empty_like(q)


@torch.library.custom_op("lst_kernels::segment_cross_attention_backward", mutates_args=())
def segment_cross_attention_backward(grad: Tensor, q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor,
                                     backend: str) -> tuple[Tensor, Tensor, Tensor]:
    if backend == "triton":
        return _triton().segment_cross_attention_bwd(grad.contiguous(), q.contiguous(), key.contiguous(),
                                                     value.contiguous(), seg_lengths.contiguous())
    return _reference_vjp(lambda *a: reference.segment_cross_attention(*a, seg_lengths), grad, q, key, value)


@segment_cross_attention_backward.register_fake
def _(grad: Tensor, q: Tensor, key: Tensor, value: Tensor, seg_lengths: Tensor,
      backend: str) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(q), torch.empty_like(key), torch.empty_like(value)


def _segment_attention_setup(ctx, inputs: tuple, output: Tensor) -> None:
    *tensors, ctx.backend = inputs
    ctx.save_for_backward(*tensors)


def _segment_attention_backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
    return *segment_cross_attention_backward(grad, *ctx.saved_tensors, ctx.backend), None, None


segment_cross_attention.register_autograd(_segment_attention_backward, setup_context=_segment_attention_setup)


# range_cross_attention ------------------------------------------------------------------------------------------

@torch.library.custom_op("lst_kernels::range_cross_attention", mutates_args=())
def range_cross_attention(q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor,
                          window: int, backend: str, deterministic: bool) -> Tensor:
    """Each token q [N, H, dh] attends to the k slots (key, value [S, k, H, dh]) of the segments first[n]..last[n]
    (at most `window` of them; first > last: zero output) -> [N, H, dh]. `deterministic`: a backward without
    atomics (Triton path; needs nondecreasing first and last)."""
    if backend == "triton":
        return _triton().range_cross_attention_fwd(q.contiguous(), key.contiguous(), value.contiguous(),
                                                   first.contiguous(), last.contiguous(), window)
    return reference.range_cross_attention(q, key, value, first, last, window)


@range_cross_attention.register_fake
def _(q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor, window: int, backend: str,
      deterministic: bool) -> Tensor:
    return torch.empty_like(q)


@torch.library.custom_op("lst_kernels::range_cross_attention_backward", mutates_args=())
def range_cross_attention_backward(grad: Tensor, q: Tensor, key: Tensor, value: Tensor, first: Tensor,
                                   last: Tensor, window: int, backend: str,
                                   deterministic: bool) -> tuple[Tensor, Tensor, Tensor]:
    if backend == "triton":
        return _triton().range_cross_attention_bwd(grad.contiguous(), q.contiguous(), key.contiguous(),
                                                   value.contiguous(), first.contiguous(), last.contiguous(),
                                                   window, deterministic)
    return _reference_vjp(lambda *a: reference.range_cross_attention(*a, first, last, window), grad, q, key, value)


@range_cross_attention_backward.register_fake
def _(grad: Tensor, q: Tensor, key: Tensor, value: Tensor, first: Tensor, last: Tensor, window: int,
      backend: str, deterministic: bool) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(q), torch.empty_like(key), torch.empty_like(value)


def _range_setup(ctx, inputs: tuple, output: Tensor) -> None:
    *tensors, window, backend, deterministic = inputs
    ctx.save_for_backward(*tensors)
    ctx.window, ctx.backend, ctx.deterministic = window, backend, deterministic


def _range_backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
    grads = range_cross_attention_backward(grad, *ctx.saved_tensors, ctx.window, ctx.backend, ctx.deterministic)
    return *grads, None, None, None, None, None


range_cross_attention.register_autograd(_range_backward, setup_context=_range_setup)

set_backend(os.environ.get("LST_KERNELS_BACKEND", "auto"))
