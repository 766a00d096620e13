"""Documents -> pieces: a document's tokens with its patch partition (stage 4 of the stream, PieceRenderer).

A unit is what the global transformer sees: a patch for the LST, a token for the baseline (whose pieces are all
1-token patches). Whether a document's speech is cut at word boundaries (aligned) or statically is drawn from an
RNG seeded by the document's identity, at the probability the patching schedule gives the batch's step: the stage
is stateless.
"""

import random
from dataclasses import dataclass, field
from typing import Sequence

from lst_train.data.documents import Document, Span
from lst_train.data.patchers import KIND_SINGLE, KIND_STATIC, Patcher
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
    patch_prompt: list[bool] = field(default_factory=list)
    """Whether each patch is prompt: read as context, its tokens not training targets (Document.prompt_spans)."""
    source: int = -1
    """A document's data source (index into data.sources)."""
    source_tokens: dict[int, int] = field(default_factory=dict)
    """A packed row's tokens per data source (its <bos> and padding belong to none)."""
    capped: bool = False
    """A packed row that stopped short of its units at the token cap (data.max_row_tokens)."""
    whole: bool = False
    """A document that packing never splits (Document.whole)."""
    short: bool = False
    """A packed row ended before its units so that a whole document could open the next row."""
    keys: list[str] = field(default_factory=list)
    """Where its documents came from (`shard:KEY`, `shard:LINE`): what a failed step's log names."""

    def add_patch(self, tokens: list[int], kind: int, seconds: float = 0.0, closed_early: bool = False,
                  prompt: bool = False) -> None:
        self.tokens += tokens
        self.patch_lengths.append(len(tokens))
        self.patch_kinds.append(kind)
        self.patch_seconds.append(seconds)
        self.patch_closed_early.append(closed_early)
        self.patch_prompt.append(prompt)

    def prompt_tokens(self) -> list[bool]:
        """Per token: whether it is prompt (not a training target)."""
        return [flag for n, flag in zip(self.patch_lengths, self.patch_prompt) for _ in range(n)]


def render_span(piece: Piece, span: Span, vocab: Vocab, patcher: Patcher | None, aligned: bool,
                marker: bool = True, prompt: bool = False, cue: bool = False) -> None:
    """Append a span (after its <t> / <s> marker unless `marker` is False) with its patches: speech cut by
    `patcher`, every token its own patch when it is None (the baseline) and for text. `prompt`: the span and its
    marker are context, not targets; `cue`: its marker only is."""
    if marker:
        piece.add_patch([vocab.speech_marker if span.speech else vocab.text_marker], KIND_SINGLE,
                        prompt=prompt or cue)
    if not span.speech:
        for token in span.tokens:
            piece.add_patch([token], KIND_SINGLE, prompt=prompt)
        return
    per_frame = vocab.n_codebooks
    n_frames = -(-len(span.tokens) // per_frame)  # an unfinished last frame (generation only) joins the last patch
    whole = len(span.tokens) // per_frame
    entropy = patcher is not None and patcher.ends_patch is not None  # reads each whole frame's first code
    first_codes = [token - vocab.speech_start for token in span.tokens[: whole * per_frame: per_frame]] \
        if entropy else []
    frames = [(1, KIND_STATIC)] * n_frames if patcher is None else \
        patcher.patch_frames(n_frames, span.word_frames, aligned, first_codes)
    start = 0
    for length, kind in frames:
        tokens = span.tokens[start: start + length * per_frame]
        seconds = length / span.frame_rate if span.frame_rate else 0.0
        if patcher is None:
            for token in tokens:
                piece.add_patch([token], kind, seconds / len(tokens), prompt=prompt)
        else:
            ends_frame = entropy and len(tokens) % per_frame == 0  # else its last frame is unfinished
            last_code = first_codes[(start + len(tokens)) // per_frame - 1] if ends_frame else None
            piece.add_patch(tokens, kind, seconds, patcher.closed_early(kind, len(tokens), per_frame, last_code),
                            prompt)
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
    piece = Piece(keys=[document.key], whole=document.whole)
    prompts = document.prompt_spans
    for i, span in enumerate(document.spans):
        render_span(piece, span, vocab, patcher, aligned, prompt=i < prompts, cue=0 < prompts == i)
    piece.add_patch([vocab.eos], KIND_SINGLE)
    return piece


class PieceRenderer:
    def __init__(self, vocab: Vocab, patcher: Patcher | None, seed: int):
        self.vocab, self.patcher, self.seed = vocab, patcher, seed

    def render(self, identity: str, document: Document, step: int) -> Piece:
        """The document's piece, its speech patched as the schedule says for a document packed at `step`."""
        patch_rng = random.Random(f"{self.seed}|patch|{identity}")
        aligned = self.patcher is not None and patch_rng.random() < self.patcher.aligned_probability(step)
        return render(document, self.vocab, self.patcher, aligned)
