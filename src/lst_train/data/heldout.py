"""Held-out documents for loss measurement: the same documents, hence the same tokens, for every architecture.

The training loader packs rows of `seq_units` global units, so a baseline's rows and an LST's rows hold different
tokens; held-out losses compared across families must not. Here each source is read by the loader's own first two
stages (SourceReader, DocumentBuilder: same decoding, same interleaving for the same data.seed), one document per
row. A model's rows differ only in their patch partition (PieceRenderer's), never in their tokens.
"""

from dataclasses import dataclass

from lst_train.config import DataConfig, SourceConfig
from lst_train.data.documents import Document, DocumentBuilder
from lst_train.data.patchers import KIND_SINGLE, Patcher
from lst_train.data.pieces import Piece, render
from lst_train.data.shards import list_shards
from lst_train.data.skips import SkipCounter, SkipSample, SourceExhausted
from lst_train.data.source_reader import SourceReader
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.vocab import Vocab


@dataclass
class HeldoutDocument:
    source: int
    """Index of its held-out source."""
    document: Document


def heldout_documents(data: DataConfig, sources: list[SourceConfig], tokenizer: SpeechTextTokenizer,
                      max_documents: int, max_tokens: int, skips: SkipCounter) -> list[HeldoutDocument]:
    """The first `max_documents` usable documents of each source (fewer if it ends first), in shard order. A
    document longer than `max_tokens` rendered tokens is skipped and counted (too_long_for_heldout) for every
    architecture alike: whether it fits depends only on its tokens."""
    builder = DocumentBuilder(tokenizer.text, tokenizer.vocab, data.interleave, data.seed)
    documents = []
    for index, source in enumerate(sources):
        paths = list_shards(source.path)
        if not paths:
            raise FileNotFoundError(f"held-out source {index}: no file matches {source.path!r}")
        reader = SourceReader(source, index, paths, 0, 1, data, tokenizer, skips, max_epochs=1)
        taken = 0
        while taken < max_documents:
            try:
                identity, item = reader.next_item()
                document = builder.build(source, identity, item)
            except SkipSample as skip:
                skips.add(skip.reason, skip.where, skip.detail)
                continue
            except SourceExhausted:
                break
            if len(render(document, tokenizer.vocab, None, False).tokens) + 1 > max_tokens:
                skips.add("too_long_for_heldout", document.key, f"over {max_tokens} tokens")
                continue
            documents.append(HeldoutDocument(index, document))
            taken += 1
    return documents


def heldout_row(document: HeldoutDocument, vocab: Vocab, patcher: Patcher | None, aligned: bool) -> Piece:
    """`<bos>` then the document (its markers and `<eos>`), patched by `patcher` (None: the baseline)."""
    piece = render(document.document, vocab, patcher, aligned)
    return Piece(tokens=[vocab.bos] + piece.tokens, patch_lengths=[1] + piece.patch_lengths,
                 patch_kinds=[KIND_SINGLE] + piece.patch_kinds, patch_seconds=[0.0] + piece.patch_seconds,
                 patch_closed_early=[False] + piece.patch_closed_early, patch_prompt=[False] + piece.patch_prompt,
                 source=document.source)
