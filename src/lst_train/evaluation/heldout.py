"""Held-out loss: nats per text token, per speech token and per second of speech, on documents that every
architecture sees token for token (lst_train.data.heldout), so families compare on exactly the same targets.

A model reads each document as one row, patched as it is evaluated (evaluation_patcher: static for a curriculum
or mixed LST, aligned for an aligned one, none for the baseline).
"""

import torch
from torch import nn

from lst_train.data.collation import collate_rows
from lst_train.data.heldout import HeldoutDocument, heldout_row
from lst_train.data.patchers import Patcher
from lst_train.loss import loss_sums, targets_of
from lst_train.vocab import Vocab

FIELDS = ("documents", "tokens", "text_tokens", "speech_tokens", "speech_seconds", "nats", "text_nats",
          "speech_nats")


def summarize(totals: dict) -> dict:
    """Counts plus nats per token, per text token, per speech token and per second of speech (None without any)."""
    def ratio(a: str, b: str):
        return totals[a] / totals[b] if totals[b] else None

    return {**totals, "nats_per_token": ratio("nats", "tokens"),
            "nats_per_text_token": ratio("text_nats", "text_tokens"),
            "nats_per_speech_token": ratio("speech_nats", "speech_tokens"),
            "nats_per_speech_second": ratio("speech_nats", "speech_seconds")}


@torch.no_grad()
def heldout_loss(model: nn.Module, documents: list[HeldoutDocument], vocab: Vocab, patcher: Patcher | None,
                 n_sources: int, batch_size: int = 8, pad_to_multiple: int = 1) -> dict:
    """{"total": summary, "sources": [summary per held-out source]} (see `summarize`); "tokens" counts targets."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    aligned = patcher is not None and patcher.cfg.strategy == "aligned"
    per_source = [dict.fromkeys(FIELDS, 0) for _ in range(n_sources)]
    for i in range(0, len(documents), batch_size):
        rows = [heldout_row(document, vocab, patcher, aligned) for document in documents[i: i + batch_size]]
        batch = collate_rows(rows, vocab, pad_to_multiple).to(device)
        per_token = model(batch.tokens, batch.patch_lengths, batch.closed_early, targets_of(batch.labels)).float()
        per_row = []
        for b in range(len(rows)):
            sums = loss_sums(per_token[b: b + 1], batch.labels[b: b + 1], vocab)
            per_row.append(torch.stack([x.double() for x in (sums.n_total, sums.n_text, sums.n_speech, sums.total,
                                                              sums.text, sums.speech)]))
        for row, values in zip(rows, torch.stack(per_row).tolist()):  # one device read per batch
            totals = per_source[row.source]
            totals["documents"] += 1
            # Seconds of target speech only: a TTS row's answer counts, an ASR row's prompt does not.
            totals["speech_seconds"] += sum(s for s, prompt in zip(row.patch_seconds, row.patch_prompt) if not prompt)
            for key, value in zip(("tokens", "text_tokens", "speech_tokens", "nats", "text_nats", "speech_nats"),
                                  values):
                totals[key] += int(value) if key.endswith("tokens") else value
    model.train(was_training)
    return _result(per_source)


def _result(per_source: list[dict]) -> dict:
    total = {key: sum(source[key] for source in per_source) for key in FIELDS}
    return {"total": summarize(total), "sources": [summarize(source) for source in per_source]}


def combine_heldout(results: list[dict]) -> dict:
    """One result from several `heldout_loss` results over disjoint documents (e.g. ranks' shares)."""
    n_sources = len(results[0]["sources"])
    return _result([{key: sum(r["sources"][i][key] for r in results) for key in FIELDS} for i in range(n_sources)])
