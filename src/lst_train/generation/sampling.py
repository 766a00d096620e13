"""Next-token choice: a modality constraint, then greedy (temperature 0) or temperature / top-k / top-p sampling."""

import torch
from torch import Tensor

from lst_train.vocab import Vocab


def allowed_tokens(vocab: Vocab, modality: str | None, speech_run: int, text_ids: int | None = None) -> Tensor:
    """Boolean [V]: what may come next. Never <bos>/<pad>, nor a text id at or past `text_ids` (the tokenizer's
    vocabulary when model.vocab.text_size is larger: never trained, not decodable); `text`: text ids or <eos>;
    `speech`: the codebook due at this place of the frame (`speech_run` speech tokens so far in the span), <eos>
    only between frames."""
    allowed = torch.ones(vocab.size, dtype=torch.bool)
    allowed[[vocab.bos, vocab.pad]] = False
    allowed[text_ids if text_ids is not None else vocab.text_size: vocab.text_size] = False
    if modality == "text":
        allowed[vocab.text_size:] = False
    elif modality == "speech":
        allowed[:] = False
        codebook = speech_run % vocab.n_codebooks
        start = vocab.speech_start + codebook * vocab.speech_codebook_size
        allowed[start: start + vocab.speech_codebook_size] = True
    if modality is not None:
        allowed[vocab.eos] = modality == "text" or speech_run % vocab.n_codebooks == 0
    return allowed


def choose_next(logits: Tensor, allowed: Tensor, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator) -> int:
    """Greedy when temperature is 0; else sample from softmax(logits / temperature) restricted to the `top_k` most
    likely ids (0 = all) and to the smallest set whose probability reaches `top_p`."""
    logits = logits.float().cpu().masked_fill(~allowed, float("-inf"))
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        kth = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(descending=True)
        probs = sorted_logits.softmax(dim=0)
        # Drop an id once the more likely ones already reach top_p (the most likely one always stays).
        drop = probs.cumsum(dim=0) - probs >= top_p
        logits[order[drop]] = float("-inf")
    return int(torch.multinomial(logits.softmax(dim=0), 1, generator=generator))
