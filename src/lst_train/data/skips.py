"""Bad input is skipped, counted by reason and logged: never fatal, never silent."""

import logging
from collections import Counter
from typing import Iterable

LOG = logging.getLogger("lst_train.data")

# Every reason a sample, line or shard can be skipped; the loader stats report counts under these names.
REASONS = (
    "missing_shard",        # a listed shard file vanished or cannot be opened
    "truncated_shard",      # a tar or zstd stream cut mid-record, or a tar without a proper end: the rest is lost
    "unreadable_member",    # a tar member whose bytes cannot be read
    "unsafe_member",        # a tar sample with a member named by an absolute or '..' path, or a link
    "line_too_long",        # a text line over MAX_LINE_BYTES (e.g. a decompression bomb): dropped unread
    "missing_json",         # a speech sample with audio but no KEY.json (or no audio / units at all)
    "invalid_json",         # JSON that does not parse, or a record that is not an object
    "invalid_utf8",         # bytes that are not UTF-8
    "empty_transcript",     # no text and no words
    "invalid_words",        # word timings negative, reversed, overlapping, out of the audio, or malformed
    "unreadable_audio",     # audio bytes the decoder rejects
    "empty_audio",          # zero samples
    "nonfinite_audio",      # NaN or inf samples
    "silent_audio",         # peak amplitude below the silence threshold
    "audio_too_long",       # longer than data.codec.max_seconds
    "invalid_units",        # pre-computed units that are not integers in the codebook range, or no frame rate
    "missing_text",         # a text record without a non-empty "text" string; an empty text ending (evaluation)
    "missing_audio",        # an evaluation item or manifest line whose audio file is missing
    "missing_transcript",   # packing: an audio file with no transcript (trans.txt line, manifest text, KEY.txt)
    "invalid_manifest",     # packing: a manifest line that does not parse or lacks an audio path / text
    "duplicate_key",        # packing: a second input with a sample key already taken (the first is kept)
    "audio_too_short",      # packing: shorter than --min-seconds
    "unalignable",          # forced alignment: a word the dictionary lacks, or the search lost the transcript
    "no_word_timings",      # a speech sample with a transcript but no word timings (packed --keep-unaligned)
    "no_context",           # a pair-preference evaluation item (no context) in a cross-modal setting (s2t, t2s)
    "unpaired",             # a benchmark record without its counterpart (a word without its nonword) (eval convert)
    "unsplit_audio",        # a spoken story pair with no consistent context/ending pause (eval convert)
    "too_long_for_heldout", # a held-out document longer than the model's row (the same for every architecture)
    "too_long_for_row",     # a task (asr / tts) document over data.seq_units tokens: never split, so skipped
)


class SkipSample(Exception):
    """Raised by a stage for one bad input; the stream catches it, counts it and moves on."""

    def __init__(self, reason: str, where: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        super().__init__(f"{reason}: {where}: {detail}")
        self.reason, self.where, self.detail = reason, where, detail


class SkipCounter:
    """Counts skips by reason; logs the first few of each reason and then every 1000th."""

    LOG_FIRST = 5

    def __init__(self, counts: dict[str, int] | None = None):
        self.counts: Counter[str] = Counter(counts or {})

    def add(self, reason: str, where: str, detail: str = "") -> None:
        if reason not in REASONS:  # a reason outside REASONS is a bug: it would appear in no table or report
            raise ValueError(f"unknown skip reason {reason!r}")
        self.counts[reason] += 1
        n = self.counts[reason]
        if n <= self.LOG_FIRST or n % 1000 == 0:
            LOG.warning("skipped %s (#%d of this reason): %s%s", reason, n, where, f": {detail}" if detail else "")

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def merge_skip_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Sum {reason: count} dicts (from readers, ranks), sorted by reason."""
    total: Counter[str] = Counter()
    for part in counts:
        total.update(part)
    return dict(sorted(total.items()))


class SourceExhausted(Exception):
    """A source read for a bounded number of passes (held-out data) has no record left."""


class NoUsableData(RuntimeError):
    """A source yielded no usable record in a whole pass: the run stops with the skip counts instead of spinning."""
