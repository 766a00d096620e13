"""GPU-only checks (skipped without CUDA): bf16 FSDP2 training on the device, Mimi batched on the GPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import RECIPES
from helpers.data import units_corpus

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_bf16_training_on_one_gpu(tmp_path):
    corpus = units_corpus(tmp_path / "corpus")
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "lst_train", "train", str(RECIPES / "debug_cpu.yaml"),
         f"data.sources[0].path={corpus['speech']}", f"data.sources[1].path={corpus['text']}",
         f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", "training.device=cuda",
         "training.mixed_precision=bf16", "training.steps=20", "training.warmup_steps=2", f"run_dir={run_dir}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    records = [json.loads(line) for line in Path(run_dir, "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < records[0]["loss"] and records[-1]["mfu"] > 0 and records[-1]["mem_gb"] > 0


def test_mimi_on_gpu_matches_cpu():
    import numpy as np

    from lst_train.config.data import CodecConfig
    from lst_train.data.speech_codec import MimiCodec

    audio = [np.random.default_rng(i).standard_normal(24000 * 3).astype(np.float32) * 0.1 for i in range(4)]
    cpu = MimiCodec(CodecConfig(device="cpu"), 1).encode_batch(audio)
    gpu = MimiCodec(CodecConfig(device="cuda"), 1).encode_batch(audio)
    agree = np.mean([np.mean(a == b) for a, b in zip(cpu, gpu)])
    assert all(a.shape == b.shape for a, b in zip(cpu, gpu)), [(a.shape, b.shape) for a, b in zip(cpu, gpu)]
    assert agree > 0.9, f"GPU codes agree with CPU codes on {agree:.1%} of frames"



def test_cached_generation_on_gpu_equals_full_forwards():
    """On CUDA the full forward runs FlexAttention and the Triton kernels; the cached path SDPA and the kernels.
    One full forward over the final sequence (not one per prefix: every new length would compile flex again)."""
    import random

    from helpers import debug_config, full_forward, random_stream
    from lst_train.generation.incremental import incremental_decoder
    from lst_train.model import build_model

    cfg = debug_config("lst", "model.init_std=0.2")
    model = build_model(cfg.model, seed=1).cuda().eval()
    tokens = random_stream(model.vocab, random.Random(3), 64, eos=False)
    decoder = incremental_decoder(model, cfg.patching)
    full = full_forward(model, cfg, tokens)
    for t, token in enumerate(tokens):
        torch.testing.assert_close(decoder.step(token), full[t], atol=1e-3, rtol=1e-3)
