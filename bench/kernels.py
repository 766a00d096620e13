"""Triton kernels of lst_kernels vs the pure-torch reference ops vs dense-masked attention (CUDA only).

For each op (segment_pool, segment_cross_attention, range_cross_attention with window 1), forward + backward time
and peak CUDA memory of three variants, in bf16 on one row of T tokens, width d = H × dh, k slots per patch, on
two partitions: static (p=4 speech patches, 1-token text patches, as bench/pool_unpool.py) and aligned-like
(word-like speech patches of 1..16 frames). The pool has no dense variant (BLT pools by scatter-reduce too).
Prints one table: milliseconds and MB per variant, and the ratios best torch variant / Triton (target >= 3x).

    python bench/kernels.py [--tokens 4096 16384] [--slots 1 2 4] [--dim 1024] [--heads 16] [--repeats 10]
"""

import argparse
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

import lst_kernels
from lst_kernels import reference
from pool_unpool import interleaved_patch_lengths

DTYPE = torch.bfloat16


def aligned_like_patch_lengths(n_tokens: int, seed: int = 0) -> torch.Tensor:
    """Runs of 1-token text patches alternating with speech runs cut into word-like patches of 1..16 frames."""
    gen = torch.Generator().manual_seed(seed)
    lengths, total, speech = [1], 1, False
    while total < n_tokens:
        for _ in range(int(torch.randint(4, 40, (1,), generator=gen))):
            cut = min(int(torch.randint(1, 17, (1,), generator=gen)) if speech else 1, n_tokens - total)
            if cut:
                lengths.append(cut)
                total += cut
        speech = not speech
    return torch.tensor(lengths)


def _dense_segment_attention(q, key, value, lengths):
    """Slots attend to all N tokens under a [S·k, N] membership mask (scaled_dot_product_attention)."""
    n_segments, n_slots, heads, dh = q.shape
    seg_of_token = torch.repeat_interleave(torch.arange(n_segments, device=q.device), lengths)
    mask = (torch.arange(n_segments, device=q.device)[:, None] == seg_of_token[None, :]).repeat_interleave(n_slots, 0)
    out = F.scaled_dot_product_attention(q.reshape(-1, heads, dh).transpose(0, 1), key.transpose(0, 1),
                                         value.transpose(0, 1), attn_mask=mask)
    return out.transpose(0, 1).reshape(q.shape)


def _dense_range_attention(q, key, value, first, last):
    """Tokens attend to all S·k slots under a [N, S·k] range mask (scaled_dot_product_attention)."""
    n_segments, n_slots, heads, dh = key.shape
    seg = torch.arange(n_segments, device=q.device).repeat_interleave(n_slots)
    mask = (seg[None, :] >= first[:, None]) & (seg[None, :] <= last[:, None])
    out = F.scaled_dot_product_attention(q.transpose(0, 1), key.reshape(-1, heads, dh).transpose(0, 1),
                                         value.reshape(-1, heads, dh).transpose(0, 1), attn_mask=mask)
    return out.transpose(0, 1)


def _case_inputs(lengths: torch.Tensor, dim: int, slots: int, heads: int) -> dict[str, object]:
    """Tensors of one case on the GPU; last = the patch before the one holding token t+1 (window 1)."""
    n_tokens, n_segments, dh = int(lengths.sum()), len(lengths), dim // heads
    ends = lengths.cumsum(0)
    last = torch.searchsorted(ends, torch.arange(n_tokens) + 1, right=True) - 1
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to("cuda", DTYPE)

    return dict(lengths=lengths.cuda(), first=last.cuda(), last=last.cuda(), x=randn(n_tokens, dim),
                slots=randn(n_segments, slots, heads, dh), tokens=randn(n_tokens, heads, dh))


def _variants(case: dict) -> dict[str, dict[str, tuple[Callable, list[torch.Tensor]]]]:
    """op -> variant -> (function of the differentiable inputs, those inputs)."""
    lengths, first, last = case["lengths"], case["first"], case["last"]
    x, slots, tokens = case["x"], case["slots"], case["tokens"]
    return {
        "segment_pool": {
            "triton": (lambda x: lst_kernels.segment_pool(x, lengths, "max", backend="triton"), [x]),
            "reference": (lambda x: reference.segment_pool(x, lengths, "max"), [x]),
        },
        "segment_cross_attention": {
            "triton": (lambda *a: lst_kernels.segment_cross_attention(*a, lengths, backend="triton"),
                       [slots, tokens, tokens]),
            "reference": (lambda *a: reference.segment_cross_attention(*a, lengths), [slots, tokens, tokens]),
            "dense": (lambda *a: _dense_segment_attention(*a, lengths), [slots, tokens, tokens]),
        },
        "range_cross_attention": {
            "triton": (lambda *a: lst_kernels.range_cross_attention(*a, first, last, 1, backend="triton"),
                       [tokens, slots, slots]),
            "reference": (lambda *a: reference.range_cross_attention(*a, first, last, 1), [tokens, slots, slots]),
            "dense": (lambda *a: _dense_range_attention(*a, first, last), [tokens, slots, slots]),
        },
    }


def measure(fn: Callable, inputs: list[torch.Tensor], repeats: int) -> tuple[float, float] | None:
    """(median milliseconds, peak MB above the inputs) of forward + backward; None when out of memory."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    try:
        grad = torch.randn_like(fn(*leaves))
        times = []
        for i in range(repeats + 2):  # two warm-up runs (Triton compilation, allocator)
            for leaf in leaves:
                leaf.grad = None
            torch.cuda.synchronize()
            if i == 2:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*leaves).backward(grad)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
            if i == 2:
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        return sorted(times[2:])[len(times[2:]) // 2], peak
    except torch.cuda.OutOfMemoryError:
        return None
    finally:
        del leaves
        torch.cuda.empty_cache()


def _cell(result: tuple[float, float] | None) -> str:
    return f"{'oom':>19}" if result is None else f"{result[0]:>11.2f}{result[1]:>8.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench/kernels.py needs a CUDA device (the Triton kernels run on the GPU); nothing to measure here.")
        sys.exit(0)
    names = ("triton", "reference", "dense")
    print(f"fwd+bwd, {DTYPE}, d={args.dim}, heads={args.heads}, {torch.cuda.get_device_name()}; "
          "per variant: ms, peak MB; ratios: best torch variant / triton")
    print(f"{'op':<24}{'partition':<10}{'T':>6}{'k':>3}{'P':>7}"
          + "".join(f"{n + ' ms':>11}{'MB':>8}" for n in names) + f"{'x time':>8}{'x mem':>7}")
    for n_tokens in args.tokens:
        for partition, lengths in (("static", interleaved_patch_lengths(n_tokens, 4)),
                                   ("aligned", aligned_like_patch_lengths(n_tokens))):
            for slots in args.slots:
                case = _case_inputs(lengths, args.dim, slots, args.heads)
                for op, variants in _variants(case).items():
                    results = {n: measure(*variants[n], args.repeats) if n in variants else None for n in names}
                    torch_runs = [results[n] for n in ("reference", "dense") if results[n] is not None]
                    ours = results["triton"]
                    speed = memory = float("nan")
                    if ours and torch_runs:
                        speed = min(r[0] for r in torch_runs) / ours[0]
                        memory = min(r[1] for r in torch_runs) / max(ours[1], 1e-3)
                    cells = "".join(_cell(results[n]) if n in variants else f"{'-':>19}" for n in names)
                    print(f"{op:<24}{partition:<10}{n_tokens:>6}{slots:>3}{len(lengths):>7}{cells}"
                          f"{speed:>7.1f}x{memory:>6.1f}x")


if __name__ == "__main__":
    main()
