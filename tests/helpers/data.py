"""Small real shards written by the tests (WebDataset tars of audio or units, jsonl(.zst) text, a BPE file) and
the loader built from a test's recipe."""

import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import soundfile
import zstandard

from lst_train.config import Config
from lst_train.data.dataset import build_dataloader, resolve_shards
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.stream import ReaderStream
from lst_train.data.text_tokenizer import train_bpe, write_ranks

WORDS = ("the quick brown fox jumps over a lazy dog while seven silver swans sing softly near "
         "an old mill by the river and children laugh in warm summer light").split()


def transcript(rng: random.Random, n_words: int, seconds_per_word: float = 0.4, gap: float = 0.1):
    """Words with ordered, non-overlapping timings, and the total duration."""
    words, t = [], 0.2
    for _ in range(n_words):
        word = rng.choice(WORDS)
        duration = seconds_per_word * rng.uniform(0.6, 1.4)
        words.append({"word": word, "start": round(t, 3), "end": round(t + duration, 3)})
        t += duration + gap * rng.uniform(0.0, 2.0)
    return words, t + 0.2


def wav_bytes(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0, fmt: str = "WAV") -> bytes:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    tone = np.sin(2 * np.pi * rng.uniform(120, 300) * np.arange(n) / rate) * 0.3
    audio = (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)
    audio = np.stack([audio] * channels, axis=1) if channels > 1 else audio
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format=fmt)
    return buffer.getvalue()


def units_sample(rng: random.Random, n_words: int, codebook_size: int, frame_rate: float = 25.0) -> dict:
    words, duration = transcript(rng, n_words)
    units = [rng.randrange(codebook_size) for _ in range(int(duration * frame_rate))]
    return {"units.json": json.dumps({"units": units, "frame_rate": frame_rate, "words": words}).encode()}


def audio_sample(rng: random.Random, n_words: int, **wav_options) -> dict:
    words, duration = transcript(rng, n_words)
    text = " ".join(w["word"] for w in words)
    return {"wav": wav_bytes(duration, seed=rng.randrange(1 << 30), **wav_options),
            "json": json.dumps({"text": text, "words": words}).encode()}


def write_tar(path: Path, samples: list[tuple[str, dict]]) -> Path:
    """samples: (key, {ext: bytes}) in order."""
    with tarfile.open(path, "w") as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if path.suffix == ".zst" else data)
    return path


def text_lines(rng: random.Random, n: int) -> list[bytes]:
    return [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))}).encode()
            for _ in range(n)]


def write_tokenizer(path: Path) -> Path:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(50)) for _ in range(200)]
    write_ranks(train_bpe(texts, 300), path)
    return path


def units_corpus(root: Path, n_speech_shards: int = 3, samples_per_shard: int = 6, n_text_shards: int = 2,
                 codebook_size: int = 2048, seed: int = 0) -> dict:
    """A units-based speech corpus plus text shards and a tokenizer under `root`; returns the paths."""
    rng = random.Random(seed)
    (root / "speech").mkdir(parents=True, exist_ok=True)
    (root / "text").mkdir(parents=True, exist_ok=True)
    for s in range(n_speech_shards):
        samples = [(f"{s:03d}-{i:04d}", units_sample(rng, rng.randint(6, 30), codebook_size))
                   for i in range(samples_per_shard)]
        write_tar(root / "speech" / f"shard-{s:03d}.tar", samples)
    for s in range(n_text_shards):
        write_jsonl(root / "text" / f"shard-{s:03d}.jsonl.zst", text_lines(rng, 20))
    return {"speech": str(root / "speech" / "*.tar"), "text": str(root / "text" / "*.jsonl.zst"),
            "tokenizer": str(write_tokenizer(root / "tokenizer.tiktoken"))}


def reader_stream(cfg: Config, reader: int = 0, n_readers: int = 1) -> ReaderStream:
    """The stream of one reader (no loader worker) of a recipe's training data."""
    spec = LoaderSpec.from_recipe(cfg)
    return ReaderStream(spec, resolve_shards(spec), reader, n_readers, 0, 1)


def recipe_loader(cfg: Config, rank: int = 0, world_size: int = 1):
    """The training loader a recipe gives one rank."""
    return build_dataloader(LoaderSpec.from_recipe(cfg), rank, world_size)
