"""Score each ending by its log-likelihood given the context (sum, and mean per token), pick the best."""

import torch
from torch import nn
from tqdm import tqdm

from lst_train.data.collation import collate_rows
from lst_train.data.pieces import Piece
from lst_train.data.skips import SkipCounter, SkipSample
from lst_train.evaluation.items import EvalItem
from lst_train.evaluation.prompts import SETTINGS, PromptBuilder
from lst_train.vocab import Vocab


@torch.no_grad()
def ending_scores(model: nn.Module, rows: list[tuple[Piece, int]], vocab: Vocab, batch_size: int = 16,
                  pad_to_multiple: int = 1) -> list[tuple[float, int]]:
    """(sum of log p(ending token | everything before), number of ending tokens) per row; batched, padded to a
    multiple of `pad_to_multiple` (training's buckets: no new shape, so no recompile, per evaluation batch)."""
    scores = []
    device = next(model.parameters()).device
    for i in range(0, len(rows), batch_size):
        chunk = rows[i: i + batch_size]
        batch = collate_rows([piece for piece, _ in chunk], vocab, pad_to_multiple)
        tokens = batch.tokens.to(device)
        logits = model(tokens, batch.patch_lengths.to(device), batch.closed_early.to(device))
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for b, (piece, start) in enumerate(chunk):
            end = len(piece.tokens)
            targets = tokens[b, start:end]
            picked = logprobs[b, start - 1: end - 1].gather(-1, targets[:, None])
            scores.append((float(picked.sum()), end - start))
    return scores


def evaluate(model: nn.Module, builder: PromptBuilder, items: list[EvalItem], settings: list[str],
             skips: SkipCounter, batch_size: int = 16, progress: bool = False, pad_to_multiple: int = 1) -> dict:
    """Accuracy with the summed and with the per-token mean log-likelihood, per setting, with item counts.
    `progress`: a bar per setting over the items (prompt building is where Mimi encodes the audio)."""
    results = {}
    for setting in settings:
        context_speech, ending_speech = SETTINGS[setting]
        rows, owners = [], []
        for item in tqdm(items, desc=setting, unit="item", disable=not progress):
            if item.context is None and context_speech != ending_speech:
                skips.add("no_context", f"{setting}:{item.id}", "a pair-preference item has no context to cross "
                          "modality from: score it in s2s or t2t")
                continue
            needs_audio = item.endings * ending_speech
            if context_speech and item.context is not None:
                needs_audio = [item.context, *needs_audio]
            if any(not segment.audio for segment in needs_audio):
                skips.add("missing_audio", f"{setting}:{item.id}", "the item has no audio for a spoken setting")
                continue
            if not ending_speech and any(not ending.text.strip() for ending in item.endings):
                skips.add("missing_text", f"{setting}:{item.id}", "an empty text ending has no token to score")
                continue
            try:  # a bad item (unreadable audio, malformed word timings) is skipped and counted, never fatal
                item_rows = [builder.build(item.context, ending, setting) for ending in item.endings]
            except SkipSample as skip:
                skips.add(skip.reason, f"{setting}:{item.id}", f"{skip.where}: {skip.detail}")
                continue
            rows += item_rows
            owners.append(item)
        scores = iter(ending_scores(model, rows, builder.vocab, batch_size, pad_to_multiple))
        correct_sum = correct_mean = 0
        for item in owners:
            item_scores = [next(scores) for _ in item.endings]
            sums = [total for total, _ in item_scores]
            means = [total / max(count, 1) for total, count in item_scores]
            correct_sum += int(max(range(len(sums)), key=sums.__getitem__) == item.label)
            correct_mean += int(max(range(len(means)), key=means.__getitem__) == item.label)
        results[setting] = with_accuracy({"items": len(owners), "correct_sum": correct_sum,
                                          "correct_mean": correct_mean})
    return results


def with_accuracy(counts: dict) -> dict:
    """Add the accuracies to {items, correct_sum, correct_mean} (None without items)."""
    n = counts["items"]
    return {**counts, "accuracy_sum": counts["correct_sum"] / n if n else None,
            "accuracy_mean": counts["correct_mean"] / n if n else None}
