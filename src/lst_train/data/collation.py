"""Rows -> a Batch (stage 6 of the stream, BatchCollator): padded tensors, per-row statistics, exact FLOPs."""

import math

import torch

from lst_train.config import ModelConfig
from lst_train.data.batch import Batch
from lst_train.data.patchers import SPEECH_KINDS
from lst_train.data.pieces import Piece
from lst_train.data.stats import ROW_SUMS
from lst_train.flops import batch_flops
from lst_train.loss import IGNORE_INDEX, labels_from_tokens
from lst_train.vocab import Vocab


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
    prompt = torch.zeros((len(rows), width), dtype=torch.bool)
    stats = {name: [] for name in ROW_SUMS}
    for b, row in enumerate(rows):
        tokens[b, : len(row.tokens)] = torch.tensor(row.tokens)
        lengths = row.patch_lengths + ([width - len(row.tokens)] if len(row.tokens) < width else [])
        patch_lengths[b, : len(lengths)] = torch.tensor(lengths)
        closed_early[b, : len(row.patch_closed_early)] = torch.tensor(row.patch_closed_early, dtype=torch.bool)
        prompt[b, : len(row.tokens)] = torch.tensor(row.prompt_tokens(), dtype=torch.bool)
        row_tokens = tokens[b, : len(row.tokens)]
        stats["speech_seconds"].append(sum(row.patch_seconds))
        stats["speech_tokens"].append(int(vocab.is_speech(row_tokens).sum()))
        stats["text_tokens"].append(int((row_tokens < vocab.text_size).sum()))
        stats["tokens"].append(len(row.tokens))
        stats["patches"].append(len(row.patch_lengths))
        stats["capped_rows"].append(int(row.capped))
        stats["short_rows"].append(int(row.short))
        for kind, name in SPEECH_KINDS.items():
            count, total = _kind_totals(row, kind)
            stats[f"{name}_patches"].append(count)
            stats[f"{name}_tokens"].append(total)
    labels = labels_from_tokens(tokens, vocab, prompt)
    stats["target_tokens"] = (labels != IGNORE_INDEX).sum(dim=1).tolist()  # what the loss trains on
    return Batch(tokens=tokens, labels=labels, modality=vocab.modality(tokens),
                 patch_lengths=patch_lengths, closed_early=closed_early,
                 row_stats={**{name: torch.tensor(values, dtype=torch.float64 if name == "speech_seconds" else torch.long)
                               for name, values in stats.items()},
                            "source_tokens": torch.tensor([[r.source_tokens.get(i, 0) for i in range(n_sources)]
                                                          for r in rows], dtype=torch.long).view(len(rows), n_sources)},
                 keys=[list(r.keys) for r in rows])


class BatchCollator:
    """Collates `batch_size` rows per batch and counts the batches (its state): the count is the stream's clock."""

    def __init__(self, model: ModelConfig, vocab: Vocab, pad_to_multiple: int, n_sources: int):
        self.model, self.vocab = model, vocab
        self.pad_to_multiple, self.n_sources = pad_to_multiple, n_sources
        self.batches = 0

    def collate(self, rows: list[Piece]) -> Batch:
        batch = collate_rows(rows, self.vocab, self.pad_to_multiple, self.n_sources)
        # Exact training FLOPs of the batch, counted here (in the loader worker) rather than in the training step.
        batch.flops = batch_flops(self.model, batch.tokens, batch.patch_lengths, batch.closed_early,
                                  batch.row_stats["tokens"], batch.row_stats["patches"]).training
        self.batches += 1
        return batch

    def state_dict(self) -> dict:
        return {"batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        self.batches = state["batches"]
