"""What a recipe's loader produces and skips over N batches (`lst-train data inspect`, lst_train.cli.data)."""

import time

from tqdm import tqdm

from lst_train.config.data import source_names, source_shares
from lst_train.data.dataset import build_dataloader
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.stats import LoaderStats


def inspect_loader(spec: LoaderSpec, n_batches: int) -> dict:
    """The loader statistics over `n_batches` batches of the loader, with the rates and the sources' shares."""
    loader = build_dataloader(spec)
    stats = LoaderStats()
    start = time.perf_counter()
    for batch in tqdm(loader, total=n_batches, desc="batches", unit="batch"):
        stats.update(batch)
        if stats.batches == n_batches:
            break
    seconds = time.perf_counter() - start
    summary = stats.summary()
    summary["source_names"] = source_names(spec.data.sources)
    summary["source_weights"] = [round(share, 4) for share in source_shares(spec.data.sources)]
    summary["tokens_per_s"] = round(summary["tokens"] / seconds, 1)
    summary["speech_seconds_per_s"] = round(summary["speech_seconds"] / seconds, 2)
    summary["seconds"] = round(seconds, 2)
    return summary
