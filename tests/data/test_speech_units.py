"""K-means MFCC units (data.codec.kind=kmeans): fitted by the CLI on real speech, 25 Hz, deterministic, following
the sound, usable by the loader, checked at start-up, and keyed into the token cache by content."""

import numpy as np
import pytest
import torch

from lst_train.cli import main
from lst_train.config import ConfigError, load_config
from lst_train.config.data import SourceConfig
from lst_train.data.audio import decode_audio
from lst_train.data.dataset import build_dataloader
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.speech_units import KMeansUnitCodec, mfcc_features
from lst_train.data.token_cache import codec_key

from helpers import ASSETS, RECIPES
from helpers.data import reader_stream, write_tar, write_tokenizer

N_UNITS = 16


def _speech(name: str) -> np.ndarray:
    path = next(ASSETS.glob(f"{name}.*[cv]"))
    return decode_audio(path.read_bytes(), str(path), 16000, 600.0, 1e-4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tar of the real LibriVox recordings, a BPE file, and a units file trained on them by the CLI."""
    root = tmp_path_factory.mktemp("units")
    samples = [(p.stem, {p.suffix[1:]: p.read_bytes(), "json": (ASSETS / f"{p.stem}.json").read_bytes()})
               for p in sorted(ASSETS.glob("*.*[cv]"))]
    samples.append(("bad", {"wav": b"not audio", "json": b"{}"}))
    write_tar(root / "speech-0.tar", samples)
    write_tokenizer(root / "tok.tiktoken")
    assert main(["tokenizer", "train-units", "--input", str(root / "*.tar"), "--units", str(N_UNITS),
                 "--out", str(root / "units.safetensors")]) in (0, None)
    return root


def _config(root, *overrides):
    cfg = load_config(RECIPES / "debug_cpu.yaml", [f"data.tokenizer={root / 'tok.tiktoken'}", "data.seq_units=32",
                                                   "data.codec.kind=kmeans",
                                                   f"data.codec.weights={root / 'units.safetensors'}",
                                                   f"model.vocab.speech_codebook_size={N_UNITS}", *overrides])
    cfg.data.sources = [SourceConfig(kind="speech", path=str(root / "*.tar"), sequence="speech")]
    return cfg


def test_features_are_39_dims_at_25_hz():
    audio = np.random.default_rng(0).standard_normal(16000 + 500).astype(np.float32) * 0.1
    features = mfcc_features(audio)
    assert features.shape == (25, 39) and np.isfinite(features).all()
    assert mfcc_features(audio[:100]).shape == (1, 39)


def test_units_are_deterministic_and_follow_the_sound(corpus):
    codec = KMeansUnitCodec(str(corpus / "units.safetensors"))
    speech = _speech("0880")
    codes = codec.encode(speech)
    assert codes.shape == (len(speech) // 640, 1) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < N_UNITS and len(np.unique(codes)) >= N_UNITS // 2
    assert np.array_equal(codec.encode(speech), codes)
    # The same sound gives the same units: slightly noisy copies keep most of them, another recording does not.
    noisy = speech + np.random.default_rng(1).standard_normal(len(speech)).astype(np.float32) * 1e-3
    assert (codec.encode(noisy) == codes).mean() > 0.8
    other = codec.encode(_speech("0930"))[: len(codes)]
    assert (other == codes[: len(other)]).mean() < 0.5


def test_loader_reads_units_at_25_hz_and_counts_bad_audio(corpus):
    stream = reader_stream(_config(corpus))
    piece = stream.next_piece()
    vocab = stream.tokenizer.vocab
    tokens = torch.tensor(piece.tokens)
    codes = vocab.speech_codes(tokens[vocab.is_speech(tokens)].tolist())
    assert len(codes) > 20 and codes.min() >= 0 and codes.max() < N_UNITS
    assert stream.tokenizer.codec().frame_rate == 25.0
    while stream.sources[0].epoch == 0:  # past the bad sample at the end of the shard
        stream.next_piece()
    assert stream.skips.as_dict() == {"unreadable_audio": 1}


def test_bad_units_configuration_fails_at_start_up_naming_the_key(corpus):
    with pytest.raises(ConfigError, match=r"^data\.codec\.weights: .*train-units"):
        load_config(RECIPES / "debug_cpu.yaml", ["data.codec.kind=kmeans"])
    cfg = _config(corpus, "model.vocab.speech_codebook_size=2048")
    with pytest.raises(ConfigError, match=rf"^model\.vocab\.speech_codebook_size: .* {N_UNITS} units"):
        build_dataloader(LoaderSpec.from_recipe(cfg))
    cfg = _config(corpus, f"data.codec.weights={corpus / 'tok.tiktoken'}")
    with pytest.raises(ConfigError, match=r"^data\.codec\.weights: .*not a readable units file"):
        build_dataloader(LoaderSpec.from_recipe(cfg))


def test_token_cache_key_follows_the_units_file_contents(corpus, tmp_path):
    cfg = _config(corpus, f"data.codec.weights={tmp_path / 'u.safetensors'}")
    keys = []
    for units in (8, 12):
        assert main(["tokenizer", "train-units", "--input", str(corpus / "*.tar"), "--units", str(units),
                     "--out", str(tmp_path / "u.safetensors")]) in (0, None)
        keys.append(codec_key(cfg.data.codec, 1))
    assert keys[0] != keys[1]
