"""Aggregate the per-row stats and per-reader skip counts that batches carry, for logs and `data inspect`."""

from collections import defaultdict

from lst_train.data.batch import Batch
from lst_train.data.patchers import SPEECH_KINDS
from lst_train.data.skips import merge_skip_counts

ROW_SUMS = ("speech_seconds", "speech_tokens", "text_tokens", "target_tokens", "tokens", "patches",
            "capped_rows", "short_rows") + tuple(
    f"{name}_{what}" for name in SPEECH_KINDS.values() for what in ("patches", "tokens"))
"""The per-row statistics of a batch (row_stats), summed over batches."""


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def token_shares(source_tokens: list[float]) -> list[float | None]:
    """Each source's realised share of the tokens (None before any token)."""
    total = sum(source_tokens)
    return [_ratio(tokens, total) for tokens in source_tokens]


class LoaderStats:
    """Running totals over the batches seen; skip counts are cumulative per reader, so the latest of each counts."""

    def __init__(self):
        self.sums: defaultdict[str, float] = defaultdict(float)
        self.source_tokens: list[int] = []
        self.batches = 0
        self.skipped_by_reader: dict[int, dict[str, int]] = {}

    def update(self, batch: Batch) -> None:
        self.batches += 1
        for name in ROW_SUMS:
            self.sums[name] += float(batch.row_stats[name].sum())
        per_source = batch.row_stats["source_tokens"].sum(dim=0).tolist()
        self.source_tokens = [total + n for total, n in zip(self.source_tokens or [0] * len(per_source), per_source)]
        loader = batch.loader
        self.skipped_by_reader[loader["reader"]] = loader["skipped"]

    @property
    def skipped(self) -> dict[str, int]:
        return merge_skip_counts(self.skipped_by_reader.values())

    def summary(self) -> dict:
        s = self.sums
        speech_patches = sum(s[f"{name}_patches"] for name in SPEECH_KINDS.values())
        return {
            "batches": self.batches,
            "tokens": int(s["tokens"]),
            "patches": int(s["patches"]),
            "capped_rows": int(s["capped_rows"]),
            "short_rows": int(s["short_rows"]),
            "speech_seconds": round(s["speech_seconds"], 2),
            "speech_token_fraction": _ratio(s["speech_tokens"], s["tokens"]),
            "text_token_fraction": _ratio(s["text_tokens"], s["tokens"]),
            "target_token_fraction": _ratio(s["target_tokens"], s["tokens"]),
            "tokens_per_patch": _ratio(s["tokens"], s["patches"]),
            "tokens_per_patch_static": _ratio(s["static_tokens"], s["static_patches"]),
            "tokens_per_patch_aligned": _ratio(s["word_tokens"] + s["silence_tokens"],
                                               s["word_patches"] + s["silence_patches"]),
            "tokens_per_word_patch": _ratio(s["word_tokens"], s["word_patches"]),
            "tokens_per_silence_patch": _ratio(s["silence_tokens"], s["silence_patches"]),
            "tokens_per_patch_entropy": _ratio(s["entropy_tokens"], s["entropy_patches"]),
            "speech_patches_per_second": _ratio(speech_patches, s["speech_seconds"]),
            "source_token_shares": token_shares(self.source_tokens),
            "skipped": self.skipped,
        }
