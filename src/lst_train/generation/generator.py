"""The generation loop: run the prompt through the incremental decoder, then choose and feed tokens until <eos>
or `max_tokens`."""

from dataclasses import dataclass, field

import torch

from lst_train.config import PatchingConfig
from lst_train.generation.incremental import incremental_decoder
from lst_train.generation.sampling import allowed_tokens, choose_next
from lst_train.vocab import Vocab


@dataclass
class SamplingConfig:
    max_tokens: int = 200
    """Most tokens to generate (fewer when <eos> comes first)."""
    temperature: float = 1.0
    """0 = greedy."""
    top_k: int = 0
    """Sample among the k most likely ids (0 = all)."""
    top_p: float = 1.0
    """Nucleus sampling: the smallest set of ids whose probability reaches top_p (1 = all)."""
    seed: int = 0
    """Seed of the sampling generator."""


@dataclass
class Generation:
    prompt: list[int]
    """The prompt's token ids as fed (with <bos> and any span marker)."""
    tokens: list[int] = field(default_factory=list)
    """The generated ids."""
    global_steps: int = 0
    """Global-transformer steps taken while generating (the baseline takes one per token)."""


def speech_run_length(tokens: list[int], vocab: Vocab) -> int:
    """Speech tokens at the end of `tokens` (since the last non-speech token)."""
    run = 0
    for token in reversed(tokens):
        if not vocab.speech_start <= token < vocab.speech_end:
            break
        run += 1
    return run


def generate(model, prompt: list[int], patching: PatchingConfig, sampling: SamplingConfig,
             modality: str | None = None, text_ids: int | None = None) -> Generation:
    """Continue `prompt` (ids starting with <bos>); `modality` ('speech' | 'text' | None = free) constrains every
    generated token, and text ids stop at `text_ids` (the text tokenizer's n_vocab; see allowed_tokens)."""
    vocab: Vocab = model.vocab
    decoder = incremental_decoder(model, patching)
    generator = torch.Generator().manual_seed(sampling.seed)
    for token in prompt:
        logits = decoder.step(token)
    result = Generation(prompt=list(prompt))
    steps_before = decoder.global_steps
    speech_run = speech_run_length(prompt, vocab)
    for _ in range(sampling.max_tokens):
        allowed = allowed_tokens(vocab, modality, speech_run, text_ids)
        token = choose_next(logits, allowed, sampling.temperature, sampling.top_k, sampling.top_p, generator)
        result.tokens.append(token)
        speech_run = speech_run + 1 if vocab.speech_start <= token < vocab.speech_end else 0
        if token == vocab.eos:
            break
        logits = decoder.step(token)
    result.global_steps = decoder.global_steps - steps_before
    return result
