"""Generation's prompts and files: a text or audio prompt as token ids; generated ids as text, speech codes
(generation.json) and audio through Mimi's decoder (speech.wav)."""

import json
import os

import numpy as np
import soundfile

from lst_train.data.skips import SkipSample
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.generation.generator import Generation
from lst_train.vocab import Vocab


def prompt_tokens(tokenizer: SpeechTextTokenizer, prompt_text: str | None = None, prompt_audio: str | None = None,
                  modality: str | None = None) -> list[int]:
    """<bos>, the span marker, the text or audio prompt; then the other marker when `modality` switches."""
    vocab = tokenizer.vocab
    if prompt_text is not None:
        prompt = [vocab.bos, vocab.text_marker] + tokenizer.text.encode(prompt_text)
    else:
        try:
            audio = tokenizer.read_audio(prompt_audio)
        except SkipSample as err:
            raise SystemExit(f"lst-train generate: {prompt_audio}: {err.reason} {err.detail}".rstrip())
        prompt = [vocab.bos, vocab.speech_marker] + vocab.speech_ids(tokenizer.codec().encode(audio))
    prompt_speech = prompt_text is None
    if modality is not None and (modality == "speech") != prompt_speech:
        prompt.append(vocab.speech_marker if modality == "speech" else vocab.text_marker)
    return prompt


def spans(tokens: list[int], vocab: Vocab) -> list[tuple[bool, list[int]]]:
    """Consecutive runs of speech / text ids (specials dropped) as (is_speech, ids)."""
    runs: list[tuple[bool, list[int]]] = []
    for token in tokens:
        if token >= vocab.speech_end:
            continue
        speech = token >= vocab.speech_start
        if not runs or runs[-1][0] != speech:
            runs.append((speech, []))
        runs[-1][1].append(token)
    return runs


def speech_frames(runs: list[tuple[bool, list[int]]], vocab: Vocab) -> np.ndarray:
    """The speech spans' frames, in order: codes [frames, n_codebooks]. Each span drops its own unfinished frame (a
    free-modality sample may switch to text mid-frame), so no later frame has its codebooks shifted."""
    frames = [vocab.speech_codes(ids) for speech, ids in runs if speech]
    return np.concatenate(frames) if frames else np.zeros((0, vocab.n_codebooks), dtype=np.int64)


def write_outputs(result: Generation, tokenizer: SpeechTextTokenizer, out_dir: str) -> dict:
    """generation.json (+ speech.wav when speech was generated and the codec is Mimi); returns the summary."""
    os.makedirs(out_dir, exist_ok=True)
    vocab = tokenizer.vocab
    runs = spans(result.tokens, vocab)
    text = "".join(tokenizer.text.decode(ids) for speech, ids in runs if not speech)
    codes = speech_frames(runs, vocab)
    summary = {"text": text, "speech_frames": len(codes), "generated_tokens": len(result.tokens),
               "global_steps": result.global_steps, "baseline_global_steps": len(result.tokens),
               "prompt_tokens": result.prompt, "tokens": result.tokens, "speech_codes": codes.tolist()}
    if len(codes) and tokenizer.codec_cfg.kind == "mimi":
        codec = tokenizer.codec()
        audio = codec.decode(codes)
        peak = float(np.abs(audio).max())
        if peak > 1.0:  # random-weight Mimi decodes far above full scale
            audio = audio * (0.95 / peak)
        summary["wav"] = os.path.join(out_dir, "speech.wav")
        soundfile.write(summary["wav"], audio, codec.sample_rate)
    with open(os.path.join(out_dir, "generation.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary
