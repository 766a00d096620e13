"""Real recorded speech (tests/assets/librivox) through the real Mimi model (random weights) into LST batches."""

import json

import numpy as np
import pytest
import soundfile
import torch

from lst_train.config import load_config
from lst_train.config.data import SourceConfig
from lst_train.data.patchers import KIND_WORD
from lst_train.loss import next_token_loss_sums
from lst_train.model import build_model
from lst_train.trainer.checkpointing import RankLocalState

from helpers import ASSETS, RECIPES
from helpers.data import reader_stream, recipe_loader, write_tar, write_tokenizer



@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    samples = []
    for audio in sorted(ASSETS.glob("*.*[cv]")):
        samples.append((audio.stem, {audio.suffix[1:]: audio.read_bytes(),
                                     "json": (ASSETS / f"{audio.stem}.json").read_bytes()}))
    write_tar(root / "speech-0.tar", samples)
    write_tokenizer(root / "tok.tiktoken")
    return root, samples


def _config(root, *overrides):
    cfg = load_config(RECIPES / "debug_cpu.yaml", [f"data.tokenizer={root / 'tok.tiktoken'}", "data.seq_units=64",
                                                   "data.batch_size=2", *overrides])
    cfg.data.sources = [SourceConfig(kind="speech", path=str(root / "speech-*.tar"), sequence="speech")]
    return cfg


def test_real_speech_gives_aligned_patches_per_word(real_corpus):
    root, samples = real_corpus
    assert len(samples) == 2
    cfg = _config(root, "patching.strategy=aligned", "patching.max_len=64")
    stream = reader_stream(cfg)
    for key, files in samples:
        piece = stream.next_piece()
        audio_ext = next(ext for ext in files if ext != "json")
        seconds = soundfile.info(ASSETS / f"{key}.{audio_ext}").duration
        speech = [t for t in piece.tokens if stream.tokenizer.vocab.is_speech(torch.tensor(t))]
        assert abs(len(speech) - seconds * 12.5) <= 1, "Mimi: 12.5 frames per second, one codebook"
        assert len(set(speech)) > len(speech) // 4, "random-weight Mimi still gives audio-dependent codes"
        words = json.loads(files["json"])["words"]
        word_patches = sum(1 for kind in piece.patch_kinds if kind == KIND_WORD)
        assert len(words) - 2 <= word_patches <= len(words), "one patch per word (words under a frame merge)"
        assert abs(sum(piece.patch_seconds) - seconds) <= 0.1


def test_real_speech_batches_train_the_debug_lst(real_corpus):
    root, _ = real_corpus
    cfg = _config(root, "patching.strategy=mixed")
    batch = next(iter(recipe_loader(cfg)))
    model = build_model(cfg.model)
    sums = next_token_loss_sums(model(batch.tokens, batch.patch_lengths), batch.labels, model.vocab)
    assert sums.n_speech > 50 and torch.isfinite(sums.mean())
    sums.mean().backward()
    assert batch.row_stats["speech_seconds"].sum() > 3.0


def test_batched_encoding_matches_one_by_one(real_corpus):
    root, samples = real_corpus
    single = reader_stream(_config(root))
    batched_cfg = _config(root, "data.codec.batch_size=3")
    batched = reader_stream(batched_cfg)
    one = [single.next_piece().tokens for _ in range(4)]
    many = [batched.next_piece().tokens for _ in range(4)]
    assert one == many, "the codes of an utterance do not depend on the batch it was encoded in"
    # clips ending mid-frame, next to longer ones: the partial last frame is where a batch could differ
    codec = single.tokenizer.codec()
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in (48000, 30000, 17280, 20000, 1000)]
    batch = codec.encode_batch(clips)
    for clip, codes in zip(clips, batch):
        assert np.array_equal(codes, codec.encode(clip)) and len(codes) == -(-len(clip) // 1920)


def test_prepared_utterances_travel_with_the_loader_state(real_corpus):
    root, _ = real_corpus
    cfg = _config(root, "data.codec.batch_size=3", "data.seq_units=8", "data.batch_size=1")
    cfg.data.sources[0].sequence = "interleaved"  # documents differ per epoch, so a lost queue would show
    stream = reader_stream(cfg)
    stream.next_batch()
    state = stream.state_dict()
    assert any(source["prepared"] for source in state["sources"]), "a batch of 3 utterances was encoded and not all used yet"
    expected = [stream.next_batch().tokens for _ in range(10)]
    saved = RankLocalState(0, lambda: state, None).state_dict()  # as the checkpoint stores it: weights_only-safe
    restored = []
    RankLocalState(0, None, restored.append).load_state_dict(saved)
    resumed = reader_stream(cfg)
    resumed.load_state_dict(restored[0])
    assert all(torch.equal(a, resumed.next_batch().tokens) for a in expected)
