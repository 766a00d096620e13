"""Generation: KV-cached decoding equals full teacher-forced forwards; sampling; one global step per patch; the
command writes text, tokens and a WAV."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from helpers import (ASSETS, debug_config, full_forward, random_document, random_stream, write_entropy_table,
                     write_export)
from helpers.data import write_tokenizer
from lst_train.config import PatchingConfig
from lst_train.generation.generator import SamplingConfig, generate
from lst_train.generation.incremental import incremental_decoder
from lst_train.generation.outputs import spans, speech_frames
from lst_train.generation.sampling import allowed_tokens, choose_next
from lst_train.model import build_model
from lst_train.vocab import Vocab


def _reference_logits(model, cfg, tokens: list[int]) -> torch.Tensor:
    """Logits at the last position of a full forward over `tokens` (its last patch, if speech and short, is open:
    closed early by the row's end, so its last token reads the patch before it, as while generating)."""
    return full_forward(model, cfg, tokens)[-1]


@pytest.mark.parametrize("arch,overrides", [
    ("lst", ()),
    ("lst", ("patching.size=3", "model.unpool_window=2", "model.vocab.n_codebooks=2",
             "model.patch_slots=4", "model.encoder.dim=16", "model.decoder.dim=16")),
    ("lst", ("model.encoder.window=3", "model.decoder.window=2", "model.global_transformer.window=4")),
    ("lst", ("patching.strategy=entropy", "patching.max_len=3")),
    ("lst", ("patching.strategy=entropy", "patching.size=2", "patching.max_len=4", "model.vocab.n_codebooks=2",
             "model.unpool_window=2", "model.patch_slots=4", "model.encoder.dim=16", "model.decoder.dim=16")),
    ("baseline", ()),
])
def test_cached_logits_equal_full_forward_passes(arch, overrides, tmp_path):
    """Every position's cached logits equal one full forward over the final sequence and its final partition."""
    table = write_entropy_table(tmp_path / "entropy.safetensors", 2048)
    cfg = debug_config(arch, "model.init_std=0.2", *overrides, f"patching.entropy_table={table}")
    model = build_model(cfg.model, seed=1).eval()
    rng = random.Random(3)
    tokens = random_stream(model.vocab, rng, 72, eos=False)
    decoder = incremental_decoder(model, cfg.patching)
    full = full_forward(model, cfg, tokens)
    for t, token in enumerate(tokens):
        logits = decoder.step(token)
        torch.testing.assert_close(logits, full[t], atol=2e-5, rtol=1e-4, msg=lambda m: f"position {t}: {m}")


@pytest.mark.parametrize("arch", ["lst", "baseline"])
@pytest.mark.parametrize("modality", [None, "speech", "text"])
def test_greedy_generation_is_the_argmax_of_full_forward_passes(arch, modality):
    cfg = debug_config(arch, "model.init_std=0.2")
    model = build_model(cfg.model, seed=2).eval()
    vocab = model.vocab
    prompt = [vocab.bos] + random_document(vocab, random.Random(5), n_spans=4)[:-1]
    result = generate(model, prompt, cfg.patching, SamplingConfig(max_tokens=14, temperature=0.0), modality)
    assert len(result.tokens) >= 1
    sequence = list(prompt)
    for token in result.tokens:
        logits = _reference_logits(model, cfg, sequence)
        run = len(sequence) - max(i for i, t in enumerate(sequence) if not vocab.speech_start <= t < vocab.speech_end) - 1
        logits = logits.masked_fill(~allowed_tokens(vocab, modality, run), float("-inf"))
        assert token == int(logits.argmax())
        sequence.append(token)


def test_speech_with_static_patches_of_4_takes_4x_fewer_global_steps():
    for arch, tokens_per_step in (("lst", 4), ("baseline", 1)):
        cfg = debug_config(arch)
        model = build_model(cfg.model, seed=0).eval()
        vocab = model.vocab
        prompt = [vocab.bos, vocab.text_marker, 5, 6, vocab.speech_marker]
        result = generate(model, prompt, PatchingConfig(size=4), SamplingConfig(max_tokens=32, temperature=0.0),
                          "speech")
        speech = [t for t in result.tokens if vocab.speech_start <= t < vocab.speech_end]
        assert len(speech) >= 8 and result.tokens[len(speech):] in ([], [vocab.eos])
        assert result.global_steps == len(speech) // tokens_per_step


def test_sampling_follows_temperature_top_k_top_p_and_the_modality():
    from lst_train.vocab import Vocab

    vocab = Vocab(text_size=6, speech_codebook_size=4, n_codebooks=2)
    logits = torch.linspace(0, 3, vocab.size)
    everything = torch.ones(vocab.size, dtype=torch.bool)
    everything[[vocab.bos, vocab.pad]] = False
    generator = torch.Generator().manual_seed(0)
    assert choose_next(logits, everything, 0.0, 0, 1.0, generator) == vocab.speech_marker
    top2 = {choose_next(logits, everything, 5.0, 2, 1.0, generator) for _ in range(200)}
    assert top2 == {vocab.speech_marker, vocab.text_marker}
    assert {choose_next(logits, everything, 1.0, 0, 1e-6, generator) for _ in range(50)} == {vocab.speech_marker}
    hot = {choose_next(logits, everything, 100.0, 0, 1.0, generator) for _ in range(2000)}
    assert hot == set(torch.nonzero(everything).flatten().tolist())
    again = [choose_next(logits, everything, 1.0, 0, 0.9, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert again[0] == again[1]
    # Speech: the codebook due at this place of the frame; <eos> only between frames.
    second = allowed_tokens(vocab, "speech", speech_run=3)
    assert torch.nonzero(second).flatten().tolist() == [vocab.speech_start + 4 + c for c in range(4)]
    assert allowed_tokens(vocab, "speech", speech_run=2)[vocab.eos]
    text = allowed_tokens(vocab, "text", speech_run=0)
    assert torch.nonzero(text).flatten().tolist() == list(range(vocab.text_size)) + [vocab.eos]
    # A tokenizer smaller than model.vocab.text_size: the ids past it are never chosen (they cannot be decoded).
    assert not allowed_tokens(vocab, None, 0, text_ids=vocab.text_size - 3)[vocab.text_size - 3: vocab.text_size].any()
    assert allowed_tokens(vocab, "text", 0, text_ids=5).sum() == 5 + 1




@pytest.mark.parametrize("prompt", [["--prompt-text", "the light of the day"],
                                    ["--prompt-audio", str(ASSETS / "0930.wav")]])
def test_generate_command_writes_text_tokens_and_wav(tmp_path, prompt):
    cfg = debug_config("lst", "model.vocab.text_size=300", f"data.tokenizer={tmp_path / 't.tiktoken'}")
    write_tokenizer(tmp_path / "t.tiktoken")
    export = write_export(cfg, build_model(cfg.model, seed=0), tmp_path / "export")
    out = tmp_path / "gen"
    result = subprocess.run([sys.executable, "-m", "lst_train", "generate", str(export), *prompt,
                             "--modality", "speech", "--max-tokens", "12", "--temperature", "0.8", "--top-k", "50",
                             "--seed", "3", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((out / "generation.json").read_text())
    frames = summary["speech_frames"]
    assert frames == len(summary["speech_codes"]) >= 1 and summary["global_steps"] == frames // 4
    assert f"{summary['generated_tokens']} tokens in {frames // 4} global steps" in result.stdout
    audio, rate = soundfile.read(out / "speech.wav")
    assert rate == 24000 and len(audio) == frames * 1920 and abs(audio).max() > 0
    if prompt[0] == "--prompt-audio":
        assert len(summary["prompt_tokens"]) > 30  # the real recording through Mimi, not an empty prompt


def test_generate_command_text(tmp_path):
    cfg = debug_config("baseline", "model.vocab.text_size=300", f"data.tokenizer={tmp_path / 't.tiktoken'}")
    write_tokenizer(tmp_path / "t.tiktoken")
    export = write_export(cfg, build_model(cfg.model, seed=0), tmp_path / "export")
    out = tmp_path / "gen"
    result = subprocess.run([sys.executable, "-m", "lst_train", "generate", str(export), "--prompt-text", "light",
                             "--modality", "text", "--max-tokens", "6", "--temperature", "0", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((out / "generation.json").read_text())
    assert summary["speech_frames"] == 0 and not (out / "speech.wav").exists()
    assert 1 <= summary["generated_tokens"] <= 6 and f"text: {summary['text']!r}" in result.stdout


def test_written_speech_frames_keep_their_codebooks_across_a_mid_frame_switch_to_text():
    """Two codebooks; the first speech span stops one id into a frame (a free-modality sample switched to text):
    that unfinished frame is dropped, and the next span's frame keeps codebook 0 first."""
    vocab = Vocab(text_size=50, speech_codebook_size=10, n_codebooks=2)
    first, second = [[3, 4]], [[5, 6]]
    tokens = ([vocab.speech_marker, *vocab.speech_ids(np.array(first)), vocab.speech_id(7), vocab.text_marker, 11, 12,
               vocab.speech_marker, *vocab.speech_ids(np.array(second))])
    assert speech_frames(spans(tokens, vocab), vocab).tolist() == first + second
