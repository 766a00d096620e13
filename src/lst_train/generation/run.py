"""`lst-train generate RUN_DIR_OR_EXPORT (--prompt-text T | --prompt-audio F.wav) [--modality speech|text]
--max-tokens N [--temperature --top-k --top-p --seed] [--out DIR]`: prints the text, writes the tokens
(generation.json) and the speech through Mimi's decoder (speech.wav)."""

import argparse
import json
import os

import numpy as np
import soundfile
import torch

from lst_train.data.audio import decode_audio
from lst_train.data.skips import SkipSample
from lst_train.data.speech_codec import LazyCodec
from lst_train.data.text_tokenizer import TextTokenizer
from lst_train.evaluation.run import load_for_eval
from lst_train.generation.generator import Generation, SamplingConfig, generate
from lst_train.vocab import Vocab


def prompt_tokens(args: argparse.Namespace, vocab: Vocab, tokenizer: TextTokenizer, get_codec: LazyCodec) -> list[int]:
    """<bos>, the span marker, the prompt; then the other marker when --modality switches modality."""
    if args.prompt_text is not None:
        prompt = [vocab.bos, vocab.text_marker] + tokenizer.encode(args.prompt_text)
    else:
        codec, codec_cfg = get_codec(), get_codec.cfg
        with open(args.prompt_audio, "rb") as f:
            data = f.read()
        try:
            audio = decode_audio(data, args.prompt_audio, codec.sample_rate, codec_cfg.max_seconds,
                                 codec_cfg.silence_threshold)
        except SkipSample as err:
            raise SystemExit(f"lst-train generate: {args.prompt_audio}: {err.reason} {err.detail}".rstrip())
        prompt = [vocab.bos, vocab.speech_marker] + vocab.speech_ids(codec.encode(audio))
    prompt_speech = args.prompt_text is None
    if args.modality is not None and (args.modality == "speech") != prompt_speech:
        prompt.append(vocab.speech_marker if args.modality == "speech" else vocab.text_marker)
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


def write_outputs(result: Generation, vocab: Vocab, tokenizer: TextTokenizer, get_codec: LazyCodec,
                  out_dir: str) -> dict:
    """generation.json (+ speech.wav when speech was generated and the codec is Mimi); returns the summary."""
    os.makedirs(out_dir, exist_ok=True)
    runs = spans(result.tokens, vocab)
    text = "".join(tokenizer.decode(ids) for speech, ids in runs if not speech)
    speech_ids = [token for speech, ids in runs if speech for token in ids]
    codes = vocab.speech_codes(speech_ids)
    summary = {"text": text, "speech_frames": len(codes), "generated_tokens": len(result.tokens),
               "global_steps": result.global_steps, "baseline_global_steps": len(result.tokens),
               "prompt_tokens": result.prompt, "tokens": result.tokens, "speech_codes": codes.tolist()}
    if len(codes) and get_codec.cfg.kind == "mimi":
        codec = get_codec()
        audio = codec.decode(codes)
        peak = float(np.abs(audio).max())
        if peak > 1.0:  # random-weight Mimi decodes far above full scale
            audio = audio * (0.95 / peak)
        summary["wav"] = os.path.join(out_dir, "speech.wav")
        soundfile.write(summary["wav"], audio, codec.sample_rate)
    with open(os.path.join(out_dir, "generation.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def _run(args: argparse.Namespace) -> None:
    if (args.prompt_text is None) == (args.prompt_audio is None):
        raise SystemExit("lst-train generate: give exactly one of --prompt-text and --prompt-audio")
    model, cfg = load_for_eval(args.model)
    model.to(torch.device(args.device))
    tokenizer = TextTokenizer.from_file(cfg.data.tokenizer)
    get_codec = LazyCodec(cfg.data.codec, model.vocab.n_codebooks)  # built once, for the prompt and the WAV
    prompt = prompt_tokens(args, model.vocab, tokenizer, get_codec)
    sampling = SamplingConfig(args.max_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    result = generate(model, prompt, cfg.patching.size, sampling, args.modality)
    summary = write_outputs(result, model.vocab, tokenizer, get_codec, args.out)
    print(f"text: {summary['text']!r}")
    print(f"speech: {summary['speech_frames']} frames" + (f" -> {summary['wav']}" if "wav" in summary else ""))
    n, steps = summary["generated_tokens"], summary["global_steps"]
    print(f"{n} tokens in {steps} global steps; the baseline takes {n} "
          f"({n / max(steps, 1):.2f}x as many)")
    print(f"tokens: {os.path.join(args.out, 'generation.json')}")


def add_generate_parser(commands) -> None:
    parser = commands.add_parser("generate", help="sample text and speech (KV-cached, one global step per patch)")
    parser.add_argument("model", help="a run directory (latest checkpoint) or an export directory")
    parser.add_argument("--prompt-text", help="a text prompt")
    parser.add_argument("--prompt-audio", help="a speech prompt (any audio file soundfile reads)")
    parser.add_argument("--modality", choices=("speech", "text"),
                        help="generate only this modality (opens its span after the prompt); default: free")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=0, help="0 = no top-k cut")
    parser.add_argument("--top-p", type=float, default=1.0, help="1 = no nucleus cut")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="generated", help="output directory (default: ./generated)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.set_defaults(run=_run)
