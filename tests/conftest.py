import os
import random
from pathlib import Path

import pytest
import torch

# Without CUDA, Triton kernels run in its interpreter; triton reads this when it is first imported (by anything).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from lst_train.config import Config, load_config
from lst_train.vocab import Vocab

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def debug_config(arch: str = "lst", *overrides: str) -> Config:
    recipe = "debug_cpu.yaml" if arch == "lst" else "debug_cpu_baseline.yaml"
    return load_config(RECIPES / recipe, overrides)


def random_document(vocab: Vocab, rng: random.Random, n_spans: int, start_with_speech: bool = False,
                    first_marker: bool = True) -> list[int]:
    """An interleaved document: alternating <t> text and <s> speech spans, ended by <eos>."""
    doc: list[int] = []
    speech = start_with_speech
    for span in range(n_spans):
        marker = first_marker or span > 0
        if speech:
            doc += [vocab.speech_marker] * marker + [vocab.speech_id(rng.randrange(vocab.speech_codebook_size))
                                            for _ in range(rng.randint(1, 9))]
        else:
            doc += [vocab.text_marker] * marker + [rng.randrange(vocab.text_size) for _ in range(rng.randint(1, 4))]
        speech = not speech
    return doc + [vocab.eos]


def random_partition(tokens: list[int], vocab: Vocab, rng: random.Random, max_len: int) -> list[int]:
    """Speech runs cut into random lengths 1..max_len; every other token its own patch."""
    lengths: list[int] = []
    run = 0
    for token in tokens + [-1]:
        if vocab.speech_start <= token < vocab.speech_end:
            run += 1
            continue
        while run:
            cut = rng.randint(1, min(run, max_len))
            lengths.append(cut)
            run -= cut
        if token != -1:
            lengths.append(1)
    return lengths


def write_export(cfg: Config, model: torch.nn.Module, out_dir: Path) -> Path:
    """An export directory (what `lst-train export` writes) for `model` built from `cfg`."""
    import json

    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), out_dir / "model.safetensors")
    (out_dir / "config.json").write_text(json.dumps(OmegaConf.to_container(OmegaConf.structured(cfg))))
    return out_dir


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
