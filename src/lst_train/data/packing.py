"""Pieces -> rows with a fixed budget of global units (stage 5 of the stream, RowPacker).

Every row is <bos> then documents, filled to exactly `units` units; a document that does not fit is split at a
patch boundary and continues in the next row, so no token is dropped and no patch is split.
"""

from lst_train.data.patchers import KIND_SINGLE
from lst_train.data.pieces import Piece
from lst_train.vocab import Vocab


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
