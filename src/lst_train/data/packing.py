"""Pieces -> rows with a fixed budget of global units (stage 5 of the stream, RowPacker).

Every row is <bos> then documents, filled to exactly `units` units; a document that does not fit is split at a
patch boundary and continues in the next row, so no token is dropped and no patch is split. A whole document (a
task document, whose answer must see its prompt) is never split: a row it does not fit in ends short, padded, and
the document opens the next row; one that would not fit a baseline's row is skipped by the stream (`fits_a_row`).
"""

from lst_train.data.patchers import KIND_SINGLE
from lst_train.data.pieces import Piece
from lst_train.vocab import Vocab


class RowPacker:
    """Fills rows of exactly `units` patches, or fewer when the next patch would take a row past `max_tokens`
    tokens (0 = no cap; such a row is marked `capped`) or the next whole document would not fit (marked `short`);
    its state is the unfinished (or not yet started whole) document: exact resume."""

    def __init__(self, units: int, vocab: Vocab, max_tokens: int = 0):
        self.units = units
        self.vocab = vocab
        self.max_tokens = max_tokens
        self.pending: Piece | None = None
        self.offset = 0  # patches of `pending` already packed
        self.token_offset = 0

    def _room(self, row: Piece, piece: Piece) -> bool:
        """Whether all of `piece` fits in what is left of `row`."""
        return len(row.patch_lengths) + len(piece.patch_lengths) <= self.units and \
            (not self.max_tokens or len(row.tokens) + len(piece.tokens) <= self.max_tokens)

    def fits_a_row(self, piece: Piece) -> bool:
        """Whether `piece` fits in a row of its own (after <bos>) as tokens, each its own unit: a rule of its tokens
        alone, so that every family (the LST's units hold more) keeps the same documents."""
        return len(piece.tokens) + 1 <= (min(self.units, self.max_tokens) if self.max_tokens else self.units)

    def next_row(self, next_piece) -> Piece:
        """A full row (or a short one before a whole document); `next_piece()` supplies documents as needed."""
        row = Piece()
        row.add_patch([self.vocab.bos], KIND_SINGLE)
        while len(row.patch_lengths) < self.units and not row.capped:
            if self.pending is None or self.offset == len(self.pending.patch_lengths):
                self.pending, self.offset, self.token_offset = next_piece(), 0, 0
            pending, taken_from = self.pending, self.token_offset
            if pending.whole and self.offset == 0 and len(row.patch_lengths) > 1 and not self._room(row, pending):
                row.short = True
                break
            while len(row.patch_lengths) < self.units and self.offset < len(pending.patch_lengths):
                i, n = self.offset, pending.patch_lengths[self.offset]
                if self.max_tokens and len(row.tokens) + n > self.max_tokens and len(row.patch_lengths) > 1:
                    row.capped = True
                    break
                row.add_patch(pending.tokens[self.token_offset: self.token_offset + n], pending.patch_kinds[i],
                              pending.patch_seconds[i], pending.patch_closed_early[i], pending.patch_prompt[i])
                self.token_offset += n
                self.offset += 1
            row.source_tokens[pending.source] = row.source_tokens.get(pending.source, 0) \
                + self.token_offset - taken_from
            if self.token_offset > taken_from:
                row.keys += [key for key in pending.keys if key not in row.keys]
        return row

    def state_dict(self) -> dict:
        pending = None if self.pending is None else vars(self.pending).copy()
        return {"pending": pending, "offset": self.offset, "token_offset": self.token_offset}

    def load_state_dict(self, state: dict) -> None:
        self.pending = None if state["pending"] is None else Piece(**state["pending"])
        if self.pending is not None and not self.pending.patch_prompt:  # a state saved before task sequences
            self.pending.patch_prompt = [False] * len(self.pending.patch_lengths)
        self.offset, self.token_offset = state["offset"], state["token_offset"]
