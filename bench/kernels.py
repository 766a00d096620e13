"""Triton kernels of lst_kernels vs the best torch variant: the reference ops, torch.compile of them, and
dense-masked attention (CUDA; `--smoke` runs tiny shapes anywhere, Triton in its interpreter on a CPU).

Whole batches as the model builds them: B rows × T tokens flattened, each row cut into patches by a static partition
(p = 4 speech patches, 1-token text patches) or an aligned-like one (word-like speech patches of 1..16 frames); k
slots per patch; unpooling over windows of w patches (the layout's ranges: a token reads the w patches before the
one holding its next token, within its row). Forward and backward timed separately with CUDA events over many
repetitions (triton.testing.do_bench). Per op and variant: ms, achieved GB/s over the op's unavoidable traffic
(inputs read once, outputs written once) and its % of the device's HBM bandwidth; then the Triton time (fwd+bwd)
against the best torch variant (targets: >= 3x faster and >= 40% of HBM; unpooling w=64 within 3x of w=1).

    python bench/kernels.py [--rows 4] [--tokens 4096 16384] [--slots 1 2] [--windows 1 8 64] [--dim 1024]
"""

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import lst_kernels
from lst_kernels import reference
from pool_unpool import interleaved_patch_lengths

# HBM bandwidth in TB/s by device name (datasheet figures); --hbm-tbps overrides.
HBM_TBPS = {"H200": 4.8, "H100 SXM": 3.35, "H100 NVL": 3.9, "H100 PCIe": 2.0, "H100": 3.35, "A100": 2.0}


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


def batch_layout(rows: list[torch.Tensor], window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows' patch lengths, padded to one patch count and flattened, and each token's unpooling range."""
    width = max(len(r) for r in rows)
    lengths, firsts, lasts = [], [], []
    for i, row in enumerate(rows):
        ends = row.cumsum(0)
        n_tokens = int(ends[-1])
        last = (torch.searchsorted(ends, torch.arange(n_tokens) + 1, right=True) - 1).clamp(max=len(row) - 1)
        firsts.append((last - window + 1).clamp(min=0) + i * width)
        lasts.append(last + i * width)
        lengths.append(torch.cat([row, row.new_zeros(width - len(row))]))
    return torch.cat(lengths), torch.cat(firsts), torch.cat(lasts)


def _dense_segment_attention(q, key, value, lengths):
    """Slots attend to all N tokens under a [S·k, N] membership mask (scaled_dot_product_attention)."""
    n_segments, n_slots, heads, dh = q.shape
    seg_of_token = torch.repeat_interleave(torch.arange(n_segments, device=q.device), lengths)
    mask = (torch.arange(n_segments, device=q.device)[:, None] == seg_of_token[None, :]).repeat_interleave(n_slots, 0)
    out = F.scaled_dot_product_attention(q.reshape(-1, heads, dh).transpose(0, 1), key.transpose(0, 1),
                                         value.transpose(0, 1), attn_mask=mask)
    return out.transpose(0, 1).reshape(q.shape)


def _dense_range_attention(q, key, value, first, last, window):
    """Tokens attend to all S·k slots under a [N, S·k] range mask (scaled_dot_product_attention)."""
    n_segments, n_slots, heads, dh = key.shape
    seg = torch.arange(n_segments, device=q.device).repeat_interleave(n_slots)
    mask = (seg[None, :] >= torch.maximum(first, last - window + 1)[:, None]) & (seg[None, :] <= last[:, None])
    out = F.scaled_dot_product_attention(q.transpose(0, 1), key.reshape(-1, heads, dh).transpose(0, 1),
                                         value.reshape(-1, heads, dh).transpose(0, 1), attn_mask=mask)
    return torch.where((first <= last)[:, None, None], out.transpose(0, 1), 0.0)


def ranged(fn: Callable, first: torch.Tensor, last: torch.Tensor, window: int, *extra) -> Callable:
    """fn(q, key, value, first, last, window, *extra) as a function of the differentiable inputs only."""
    return lambda *inputs: fn(*inputs, first, last, window, *extra)


def cases(args, lengths_of: dict[str, Callable[[int, int], torch.Tensor]], device: str, dtype: torch.dtype):
    """(label, op, window, {variant: (function, inputs)}) for every shape of the matrix."""
    heads, dh = args.heads, args.dim // args.heads
    gen = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen).to(device, dtype)

    compiled = {name: torch.compile(getattr(reference, name), dynamic=False) for name in
                ("segment_pool", "segment_cross_attention", "range_cross_attention")} if args.compile else {}
    for n_tokens in args.tokens:
        for partition, make in lengths_of.items():
            rows = [make(n_tokens, seed) for seed in range(args.rows)]
            lengths = batch_layout(rows, 1)[0].to(device)
            n_all, n_segments = int(lengths.sum()), len(lengths)
            x, tokens = randn(n_all, args.dim), randn(n_all, heads, dh)
            for slots in args.slots:
                q = randn(n_segments, slots, heads, dh)
                label = (partition, n_tokens, slots)
                pool = {"triton": (lambda x: lst_kernels.segment_pool(x, lengths, "max", "triton"), [x]),
                        "reference": (lambda x: reference.segment_pool(x, lengths, "max"), [x])}
                attend = {"triton": (lambda *a: lst_kernels.segment_cross_attention(*a, lengths, "triton"),
                                     [q, tokens, tokens]),
                          "reference": (lambda *a: reference.segment_cross_attention(*a, lengths), [q, tokens, tokens]),
                          "dense": (lambda *a: _dense_segment_attention(*a, lengths), [q, tokens, tokens])}
                if compiled:
                    pool["compiled"] = (lambda x: compiled["segment_pool"](x, lengths, "max"), [x])
                    attend["compiled"] = (lambda *a: compiled["segment_cross_attention"](*a, lengths),
                                          [q, tokens, tokens])
                yield label, "segment_pool", 0, pool
                yield label, "segment_cross_attention", 0, attend
                for window in args.windows:
                    _, first, last = (t.to(device) for t in batch_layout(rows, window))
                    variants = [("triton", lst_kernels.range_cross_attention, ("triton", False)),
                                ("triton-det", lst_kernels.range_cross_attention, ("triton", True)),
                                ("reference", reference.range_cross_attention, ()),
                                ("dense", _dense_range_attention, ())]
                    if compiled:
                        variants.append(("compiled", compiled["range_cross_attention"], ()))
                    unpool = {name: (ranged(fn, first, last, window, *extra), [tokens, q, q])
                              for name, fn, extra in variants}
                    yield label, "range_cross_attention", window, unpool


def _timer(device: str, repeats: int) -> Callable[[Callable], float]:
    if device == "cuda":
        import triton.testing

        return lambda fn: triton.testing.do_bench(fn, warmup=5 * repeats, rep=25 * repeats, return_mode="median")

    def wall(fn):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats * 1e3
    return wall


def measure(timer, fn: Callable, inputs: list[torch.Tensor]) -> tuple[float, float, int, int] | None:
    """(forward ms, backward ms, forward bytes, backward bytes); None when out of memory. The bytes are the op's
    unavoidable traffic: forward reads its inputs and writes its output, backward reads the inputs and the output's
    gradient and writes the inputs' gradients."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    try:
        out = fn(*leaves)
        grad = torch.randn_like(out)
        with torch.no_grad():
            forward = timer(lambda: fn(*leaves))

        def backward():
            for leaf in leaves:
                leaf.grad = None
            out.backward(grad, retain_graph=True)
        backward_ms = timer(backward)
    except torch.OutOfMemoryError:
        return None
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    size = sum(t.numel() * t.element_size() for t in leaves)
    out_size = out.numel() * out.element_size()
    return forward, backward_ms, size + out_size, size + out_size + size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--partitions", nargs="+", default=["static", "aligned"], choices=["static", "aligned"])
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=4, help="do_bench: warm-up 5x, timing 25x this many ms")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile variants")
    parser.add_argument("--hbm-tbps", type=float, default=0.0, help="HBM bandwidth (default: by device name)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, fp32, on any device (checks the script)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        print("bench/kernels.py measures on a CUDA device; on a CPU only `--smoke` (Triton's interpreter) runs.")
        return
    dtype = torch.bfloat16 if device == "cuda" and not args.smoke else torch.float32
    if args.smoke:
        args.rows, args.tokens, args.slots, args.windows, args.dim, args.heads = 2, [64], [2], [1, 8], 32, 2
        args.compile, args.repeats = False, 1
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    hbm = args.hbm_tbps or next((tb for key, tb in HBM_TBPS.items() if key in name), 0.0)
    makers = {"static": lambda n, seed: interleaved_patch_lengths(n, 4, seed),
              "aligned": lambda n, seed: aligned_like_patch_lengths(n, seed)}
    timer = _timer(device, args.repeats)
    print(f"{name}, {dtype}, B={args.rows}, d={args.dim}, heads={args.heads}, HBM {hbm or '?'} TB/s; "
          "ms and GB/s per direction; x best torch = best torch variant's fwd+bwd time / this one's")
    print(f"{'op':<24}{'partition':<9}{'T':>6}{'k':>3}{'w':>4} {'variant':<11}{'fwd ms':>10}{'bwd ms':>10}"
          f"{'fwd GB/s':>10}{'bwd GB/s':>10}{'% HBM':>7}{'x best torch':>13}")
    for (partition, n_tokens, slots), op, window, variants in cases(
            args, {p: makers[p] for p in args.partitions}, device, dtype):
        results = {variant: measure(timer, *spec) for variant, spec in variants.items()}
        torch_times = [r[0] + r[1] for v, r in results.items() if r and not v.startswith("triton")]
        best_torch = min(torch_times, default=float("nan"))
        for variant, result in results.items():
            head = f"{op:<24}{partition:<9}{n_tokens:>6}{slots:>3}{window or '-':>4} {variant:<11}"
            if result is None:
                print(head + f"{'out of memory':>20}")
                continue
            fwd, bwd, fwd_bytes, bwd_bytes = result
            rate = (fwd_bytes + bwd_bytes) / ((fwd + bwd) * 1e-3) / 1e9
            share = f"{100 * rate / (hbm * 1e3):>6.1f}%" if hbm else f"{'?':>7}"
            ratio = f"{best_torch / (fwd + bwd):>12.2f}x" if variant.startswith("triton") else f"{'':>13}"
            print(head + f"{fwd:>10.3f}{bwd:>10.3f}{fwd_bytes / fwd / 1e6:>10.1f}{bwd_bytes / bwd / 1e6:>10.1f}"
                  f"{share}{ratio}")


if __name__ == "__main__":
    main()
