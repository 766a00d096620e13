"""Loader throughput with 0, 1 and 2 workers vs what training the debug recipe consumes, as ratios from one run.

Builds a small demo corpus (espeak-ng + bible-kjv) unless --data points at one. Loader rates exclude the first
batch (Mimi start-up). The trainer rate is forward + backward + AdamW of the recipe's model on loader batches.
A last row reads the speech from the token cache (what every epoch after the first does with data.cache_dir).

    python bench/loader.py [--recipe recipes/debug_cpu.yaml] [--data DIR] [--batches 12]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lst_train.config import load_config
from lst_train.corpora.demo_corpus import build_demo_corpus
from lst_train.data.dataset import build_dataloader, resolve_shards
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.stream import ReaderStream
from lst_train.loss import next_token_loss_sums
from lst_train.model import build_model


def _overrides(data: Path, workers: int, extra: list[str]) -> list[str]:
    return [f"data.sources[0].path={data}/speech/*.tar", f"data.sources[1].path={data}/text/*.jsonl.zst",
            f"data.tokenizer={data}/tokenizer.tiktoken", f"data.num_workers={workers}", *extra]


def loader_rate(recipe: str, overrides: list[str], n_batches: int) -> tuple[float, list[dict]]:
    """Real (non-pad) tokens per second over batches 2..n+1."""
    loader = iter(build_dataloader(LoaderSpec.from_recipe(load_config(recipe, overrides))))
    batches = [next(loader)]
    start = time.perf_counter()
    batches += [next(loader) for _ in range(n_batches)]
    seconds = time.perf_counter() - start
    return sum(float(b.row_stats["tokens"].sum()) for b in batches[1:]) / seconds, batches


def fill_token_cache(recipe: str, overrides: list[str]) -> None:
    """Read one whole epoch of the speech source, so that its shards are cached."""
    spec = LoaderSpec.from_recipe(load_config(recipe, overrides))
    stream = ReaderStream(spec, resolve_shards(spec), 0, 1, 0, 1)
    while stream.sources[0].epoch == 0:
        stream.next_piece()


def trainer_rate(recipe: str, overrides: list[str], batches: list[dict]) -> float:
    cfg = load_config(recipe, overrides)
    model = build_model(cfg.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(batch):
        logits = model(batch.tokens, batch.patch_lengths, batch.closed_early)
        sums = next_token_loss_sums(logits, batch.labels, model.vocab)
        optimizer.zero_grad()
        sums.mean().backward()
        optimizer.step()

    step(batches[0])
    start = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    seconds = time.perf_counter() - start
    return sum(float(b.row_stats["tokens"].sum()) for b in batches[1:]) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/debug_cpu.yaml")
    parser.add_argument("--data", type=Path, help="a build-demo output directory (default: build one)")
    parser.add_argument("--batches", type=int, default=12)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "demo"
            build_demo_corpus(data, minutes=3.0, seed=0)
        rates = {}
        batches = None
        for workers in (0, 1, 2):
            rates[workers], got = loader_rate(args.recipe, _overrides(data, workers, []), args.batches)
            batches = batches or got
        cached = _overrides(data, 0, [f"data.cache_dir={tmp}/cache"])
        fill_token_cache(args.recipe, cached)
        rates["0, cached"], _ = loader_rate(args.recipe, cached, args.batches)
        consumed = trainer_rate(args.recipe, _overrides(data, 0, []), batches)
    print(f"recipe {args.recipe}: trainer consumes {consumed:,.0f} tokens/s (fwd+bwd+AdamW, CPU)")
    print(f"{'workers':<10}{'tokens/s':>12}{'ratio':>10}")
    for workers, rate in rates.items():
        print(f"{workers:<10}{rate:>12,.0f}{rate / consumed:>9.1f}x")
    first_epoch = max(rate for workers, rate in rates.items() if isinstance(workers, int))
    print(f"ratio, first epoch (Mimi encodes on the fly): {first_epoch / consumed:.1f}x; "
          f"cached epochs: {rates['0, cached'] / consumed:.1f}x (target >= 2x)")


if __name__ == "__main__":
    main()
