"""`lst-train generate RUN_DIR_OR_EXPORT (--prompt-text T | --prompt-audio F.wav) [--modality speech|text]
--max-tokens N [--temperature --top-k --top-p --seed] [--out DIR]`: prints the text, writes the tokens
(generation.json) and the speech through Mimi's decoder (speech.wav)."""

import argparse
import os

import torch

from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.export import load_for_eval
from lst_train.generation.generator import SamplingConfig, generate
from lst_train.generation.outputs import prompt_tokens, write_outputs


def _run(args: argparse.Namespace) -> None:
    if (args.prompt_text is None) == (args.prompt_audio is None):
        raise SystemExit("lst-train generate: give exactly one of --prompt-text and --prompt-audio")
    model, cfg = load_for_eval(args.model)
    model.to(torch.device(args.device))
    tokenizer = SpeechTextTokenizer.from_config(cfg.data, model.vocab)  # one Mimi, for the prompt and the WAV
    prompt = prompt_tokens(tokenizer, args.prompt_text, args.prompt_audio, args.modality)
    sampling = SamplingConfig(args.max_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    result = generate(model, prompt, cfg.patching, sampling, args.modality, tokenizer.text.n_vocab)
    summary = write_outputs(result, tokenizer, args.out)
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
