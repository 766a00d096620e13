"""Documents -> patched token pieces -> rows with a fixed budget of global units -> batches.

A unit is what the global transformer sees: a patch for the LST, a token for the baseline (whose pieces are all
1-token patches). Every row is <bos> then documents, filled to exactly `units` units; a document that does not
fit is split at a patch boundary and continues in the next row, so no token is dropped and no patch is split.
"""

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from lst_train.data.batch import Batch
from lst_train.data.documents import Document, Span
from lst_train.data.patchers import KIND_SILENCE, KIND_SINGLE, KIND_STATIC, KIND_WORD, Patcher
from lst_train.loss import labels_from_tokens
from lst_train.vocab import Vocab


@dataclass
class Piece:
    """A document rendered as tokens with its patch partition (markers and <eos> included)."""

    tokens: list[int] = field(default_factory=list)
    patch_lengths: list[int] = field(default_factory=list)
    patch_kinds: list[int] = field(default_factory=list)
    patch_seconds: list[float] = field(default_factory=list)
    """Seconds of speech in each patch (0 for text and specials)."""
    patch_closed_early: list[bool] = field(default_factory=list)
    """Whether each patch closed early: its end was decided by the token after it (see Patcher.closed_early)."""
    source: int = -1
    """A document's data source (index into data.sources)."""
    source_tokens: dict[int, int] = field(default_factory=dict)
    """A packed row's tokens per data source (its <bos> and padding belong to none)."""
    capped: bool = False
    """A packed row that stopped short of its units at the token cap (data.max_row_tokens)."""

    def add_patch(self, tokens: list[int], kind: int, seconds: float = 0.0, closed_early: bool = False) -> None:
        self.tokens += tokens
        self.patch_lengths.append(len(tokens))
        self.patch_kinds.append(kind)
        self.patch_seconds.append(seconds)
        self.patch_closed_early.append(closed_early)


def render_span(piece: Piece, span: Span, vocab: Vocab, patcher: Patcher | None, aligned: bool,
                marker: bool = True) -> None:
    """Append a span (after its <t> / <s> marker unless `marker` is False) with its patches: speech cut by
    `patcher`, every token its own patch when it is None (the baseline) and for text."""
    if marker:
        piece.add_patch([vocab.speech_marker if span.speech else vocab.text_marker], KIND_SINGLE)
    if not span.speech:
        for token in span.tokens:
            piece.add_patch([token], KIND_SINGLE)
        return
    per_frame = vocab.n_codebooks
    n_frames = -(-len(span.tokens) // per_frame)  # an unfinished last frame (generation only) joins the last patch
    frames = [(1, KIND_STATIC)] * n_frames if patcher is None else \
        patcher.patch_frames(n_frames, span.word_frames, aligned)
    start = 0
    for length, kind in frames:
        tokens = span.tokens[start: start + length * per_frame]
        seconds = length / span.frame_rate if span.frame_rate else 0.0
        if patcher is None:
            for token in tokens:
                piece.add_patch([token], kind, seconds / len(tokens))
        else:
            piece.add_patch(tokens, kind, seconds, patcher.closed_early(kind, len(tokens), per_frame))
        start += len(tokens)


def row_partition(tokens: Sequence[int], vocab: Vocab, patcher: Patcher) -> tuple[list[int], list[bool]]:
    """(patch lengths, closed early) that the loader's static patching gives a token row: every speech run is
    rendered as a speech span without word timings, every other token is its own patch. For rows the loader did
    not build (causality tests, generation, scoring of token ids)."""
    piece = Piece()
    run: list[int] = []
    for token in list(tokens) + [None]:
        if token is not None and vocab.speech_start <= token < vocab.speech_end:
            run.append(token)
            continue
        if run:
            render_span(piece, Span(True, run), vocab, patcher, aligned=False, marker=False)
            run = []
        if token is not None:
            piece.add_patch([token], KIND_SINGLE)
    return piece.patch_lengths, piece.patch_closed_early


def render(document: Document, vocab: Vocab, patcher: Patcher | None, aligned: bool) -> Piece:
    """Every span with its marker and patches, then <eos>."""
    piece = Piece()
    for span in document.spans:
        render_span(piece, span, vocab, patcher, aligned)
    piece.add_patch([vocab.eos], KIND_SINGLE)
    return piece


class RowPacker:
    """Fills rows of exactly `units` patches, or fewer when the next patch would take a row past `max_tokens`
    tokens (0 = no cap; such a row is marked `capped`); its state is the unfinished document (exact resume)."""

    def __init__(self, units: int, vocab: Vocab, max_tokens: int = 0):
        self.units = units
        self.vocab = vocab
        self.max_tokens = max_tokens
        self.pending: Piece | None = None
        self.offset = 0  # patches of `pending` already packed
        self.token_offset = 0

    def next_row(self, next_piece) -> Piece:
        """A full row; `next_piece()` supplies documents as needed."""
        row = Piece()
        row.add_patch([self.vocab.bos], KIND_SINGLE)
        while len(row.patch_lengths) < self.units and not row.capped:
            if self.pending is None or self.offset == len(self.pending.patch_lengths):
                self.pending, self.offset, self.token_offset = next_piece(), 0, 0
            pending, taken_from = self.pending, self.token_offset
            while len(row.patch_lengths) < self.units and self.offset < len(pending.patch_lengths):
                i, n = self.offset, pending.patch_lengths[self.offset]
                if self.max_tokens and len(row.tokens) + n > self.max_tokens and len(row.patch_lengths) > 1:
                    row.capped = True
                    break
                row.add_patch(pending.tokens[self.token_offset: self.token_offset + n], pending.patch_kinds[i],
                              pending.patch_seconds[i], pending.patch_closed_early[i])
                self.token_offset += n
                self.offset += 1
            row.source_tokens[pending.source] = row.source_tokens.get(pending.source, 0) \
                + self.token_offset - taken_from
        return row

    def state_dict(self) -> dict:
        pending = None if self.pending is None else vars(self.pending).copy()
        return {"pending": pending, "offset": self.offset, "token_offset": self.token_offset}

    def load_state_dict(self, state: dict) -> None:
        self.pending = None if state["pending"] is None else Piece(**state["pending"])
        self.offset, self.token_offset = state["offset"], state["token_offset"]


def _kind_totals(row: Piece, kind: int) -> tuple[int, int]:
    lengths = [n for n, k in zip(row.patch_lengths, row.patch_kinds) if k == kind]
    return len(lengths), sum(lengths)


def collate_rows(rows: list[Piece], vocab: Vocab, pad_to_multiple: int, n_sources: int = 0) -> Batch:
    """Stack rows into a batch: tokens / labels / modality [B, T], patch_lengths / closed_early [B, P], per-row
    stats [B] (and source_tokens [B, n_sources]: each row's tokens per data source).

    Tokens are right-padded with <pad> to a multiple of `pad_to_multiple`; the padding of a row forms one extra
    patch (after every real one, so causality hides it), and patch_lengths is right-padded with 0.
    """
    width = math.ceil(max(len(r.tokens) for r in rows) / pad_to_multiple) * pad_to_multiple
    n_patches = max(len(r.patch_lengths) + (len(r.tokens) < width) for r in rows)
    tokens = torch.full((len(rows), width), vocab.pad, dtype=torch.long)
    patch_lengths = torch.zeros((len(rows), n_patches), dtype=torch.long)
    closed_early = torch.zeros((len(rows), n_patches), dtype=torch.bool)
    stats = {name: [] for name in ("speech_seconds", "speech_tokens", "text_tokens", "tokens", "patches",
                                   "static_patches", "static_tokens", "word_patches", "word_tokens",
                                   "silence_patches", "silence_tokens", "capped_rows")}
    for b, row in enumerate(rows):
        tokens[b, : len(row.tokens)] = torch.tensor(row.tokens)
        lengths = row.patch_lengths + ([width - len(row.tokens)] if len(row.tokens) < width else [])
        patch_lengths[b, : len(lengths)] = torch.tensor(lengths)
        closed_early[b, : len(row.patch_closed_early)] = torch.tensor(row.patch_closed_early, dtype=torch.bool)
        row_tokens = tokens[b, : len(row.tokens)]
        stats["speech_seconds"].append(sum(row.patch_seconds))
        stats["speech_tokens"].append(int(vocab.is_speech(row_tokens).sum()))
        stats["text_tokens"].append(int((row_tokens < vocab.text_size).sum()))
        stats["tokens"].append(len(row.tokens))
        stats["patches"].append(len(row.patch_lengths))
        stats["capped_rows"].append(int(row.capped))
        for name, kind in (("static", KIND_STATIC), ("word", KIND_WORD), ("silence", KIND_SILENCE)):
            count, total = _kind_totals(row, kind)
            stats[f"{name}_patches"].append(count)
            stats[f"{name}_tokens"].append(total)
    return Batch(tokens=tokens, labels=labels_from_tokens(tokens, vocab), modality=vocab.modality(tokens),
                 patch_lengths=patch_lengths, closed_early=closed_early,
                 row_stats={**{name: torch.tensor(values, dtype=torch.float64 if name == "speech_seconds" else torch.long)
                               for name, values in stats.items()},
                            "source_tokens": torch.tensor([[r.source_tokens.get(i, 0) for i in range(n_sources)]
                                                          for r in rows], dtype=torch.long).view(len(rows), n_sources)})
