"""Segment pooling + unpooling (lst_kernels.reference) vs dense-masked cross-attention (the BLT way).

Both variants initialise the slots by the same segment max-pool; they differ in the two cross-attentions.

One pooling cross-attention and one unpooling cross-attention, forward + backward, at T tokens, width d, k slots,
on a static-p partition of an interleaved row. Each variant runs in its own subprocess so that its peak memory
(growth of max RSS over the inputs) is its own. Prints one table and the ratios dense / segment.

    python bench/pool_unpool.py [--tokens 4096] [--dim 1024] [--slots 2] [--heads 16] [--repeats 3]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from lst_kernels.reference import range_cross_attention, segment_cross_attention, segment_pool


def interleaved_patch_lengths(n_tokens: int, patch_size: int, seed: int = 0) -> torch.Tensor:
    """Text runs of 1-token patches alternating with speech runs cut into static patches (~2/3 speech)."""
    gen = torch.Generator().manual_seed(seed)
    lengths, total, speech = [1], 1, False
    while total < n_tokens:
        run = int(torch.randint(4, 40, (1,), generator=gen)) * (3 if speech else 1)
        run = min(run, n_tokens - total)
        cuts = [patch_size] * (run // patch_size) + ([run % patch_size] if run % patch_size else []) if speech \
            else [1] * run
        lengths += cuts
        total += run
        speech = not speech
    return torch.tensor(lengths)


def _inputs(n_tokens, dim, slots, heads, patch_size):
    torch.manual_seed(0)
    lengths = interleaved_patch_lengths(n_tokens, patch_size)
    n_patches = len(lengths)
    dh = dim // heads
    tokens = torch.randn(n_tokens, heads, dh, requires_grad=True)
    queries = torch.randn(n_patches, slots, heads, dh, requires_grad=True)
    ends = lengths.cumsum(0)
    last = torch.searchsorted(ends, torch.arange(n_tokens) + 1, right=True) - 1
    return lengths, tokens, queries, last


def segment_variant(lengths, tokens, queries, last):
    pooled = segment_pool(tokens.flatten(1), lengths, "max")
    slots = segment_cross_attention(queries + pooled.view_as(queries[:, 0])[:, None], tokens, tokens, lengths)
    return range_cross_attention(tokens, slots, slots, last, last, 1)


def dense_variant(lengths, tokens, queries, last):
    n_tokens, heads, dh = tokens.shape
    n_patches, slots = queries.shape[:2]
    patch_of_token = torch.repeat_interleave(torch.arange(n_patches), lengths)
    member = torch.arange(n_patches)[:, None] == patch_of_token[None, :]  # [P, T]
    pooled = segment_pool(tokens.flatten(1), lengths, "max")  # BLT pools by scatter-reduce too
    q = (queries + pooled.view(n_patches, 1, heads, dh)).reshape(n_patches * slots, heads, dh).transpose(0, 1)
    kv = tokens.transpose(0, 1)
    pool_mask = member.repeat_interleave(slots, dim=0)  # [P·k, T]
    slot_states = F.scaled_dot_product_attention(q, kv, kv, attn_mask=pool_mask)  # [H, P·k, dh]
    unpool_mask = (last[:, None] == torch.arange(n_patches)[None, :]).repeat_interleave(slots, dim=1)  # [T, P·k]
    return F.scaled_dot_product_attention(kv, slot_states, slot_states, attn_mask=unpool_mask).transpose(0, 1)


def run_one(variant: str, n_tokens: int, dim: int, slots: int, heads: int, patch_size: int, repeats: int) -> dict:
    fn = {"segment": segment_variant, "dense": dense_variant}[variant]
    inputs = _inputs(n_tokens, dim, slots, heads, patch_size)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn(*inputs).sum().backward()  # warm-up; also where the peak is first reached
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*inputs).sum().backward()
        times.append(time.perf_counter() - start)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return {"variant": variant, "seconds": min(times), "peak_growth_mb": peak_mb, "patches": len(inputs[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=["segment", "dense"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.tokens, args.dim, args.slots, args.heads, args.patch_size, args.repeats)
    if args.variant:
        print(json.dumps(run_one(args.variant, *shape)))
        return
    results = {}
    for variant in ("segment", "dense"):
        cmd = [sys.executable, __file__, "--variant", variant] + [
            f"--{k}={v}" for k, v in (("tokens", args.tokens), ("dim", args.dim), ("slots", args.slots),
                                      ("heads", args.heads), ("patch-size", args.patch_size),
                                      ("repeats", args.repeats))]
        results[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    seg, dense = results["segment"], results["dense"]
    print(f"pool+unpool fwd+bwd  T={args.tokens} d={args.dim} k={args.slots} heads={args.heads} "
          f"patches={seg['patches']} (static p={args.patch_size}, interleaved)")
    print(f"{'variant':<10}{'seconds':>10}{'peak MB':>10}")
    for r in (seg, dense):
        print(f"{r['variant']:<10}{r['seconds']:>10.3f}{r['peak_growth_mb']:>10.0f}")
    speed = dense["seconds"] / seg["seconds"]
    memory = dense["peak_growth_mb"] / max(seg["peak_growth_mb"], 1.0)
    print(f"ratio dense/segment: time {speed:.1f}x, peak memory {memory:.1f}x  (target >= 10x)")


if __name__ == "__main__":
    main()
