"""Entropy patching: the speech-code bigram table (fit, threshold, file), the patches it cuts, and the recipe path
from `data fit-entropy` through the loader, with its start-up checks."""

import json

import numpy as np
import pytest

from lst_train.cli import main
from lst_train.config import ConfigError, PatchingConfig
from lst_train.data.entropy_table import EntropyTable, check_entropy_table
from lst_train.data.patchers import KIND_ENTROPY, Patcher
from lst_train.data.pieces import Piece, render_span
from lst_train.data.documents import Span
from lst_train.vocab import Vocab

from helpers import RECIPES
from helpers.data import units_corpus


def test_the_bigram_table_knows_predictable_and_unpredictable_codes():
    rng = np.random.default_rng(0)
    # Code 0 is always followed by 1, code 1 by 0 or 2 at random, code 2 by anything (0..3).
    sequences = []
    for _ in range(200):
        codes = [0]
        for _ in range(30):
            last = codes[-1]
            codes.append(1 if last == 0 else int(rng.choice([0, 2])) if last == 1 else int(rng.integers(0, 4)))
            if codes[-1] == 3:
                codes.append(0)
        sequences.append(np.array(codes))
    table = EntropyTable.fit(sequences, codebook_size=5, codec="c", smoothing=0.0)
    assert table.entropy[0] == pytest.approx(0.0, abs=1e-9)
    assert table.entropy[1] == pytest.approx(np.log(2), abs=0.02)
    assert table.entropy[2] == pytest.approx(np.log(4), abs=0.05)
    assert table.entropy[4] == pytest.approx(np.log(5)), "a code never seen: the uniform distribution's entropy"
    assert table.frames.sum() == sum(len(s) for s in sequences)
    # Only code 2's frames (and the unseen code 4's, none) end patches at the threshold for their share.
    share_2 = table.frames[2] / table.frames.sum()
    assert table.threshold(1 / share_2) == pytest.approx(table.entropy[1])
    assert table.threshold(1.0) < 0 and table.threshold(1e9) == pytest.approx(table.entropy.max())


def test_the_table_file_reads_back_and_a_foreign_or_mismatched_one_is_one_line(tmp_path):
    table = EntropyTable(entropy=np.array([0.5, 1.5, 0.1]), frames=np.array([3, 4, 0]), codec="abc", smoothing=0.2)
    table.save(str(tmp_path / "t.safetensors"))
    back = EntropyTable.load(str(tmp_path / "t.safetensors"))
    assert back.codec == "abc" and back.smoothing == 0.2
    assert np.array_equal(back.entropy, table.entropy) and np.array_equal(back.frames, table.frames)
    check_entropy_table(str(tmp_path / "t.safetensors"), "abc", 3)
    for path, codec, size, says in ((tmp_path / "t.safetensors", "other", 3, "another codec"),
                                    (tmp_path / "t.safetensors", "abc", 4, "another codec"),
                                    (tmp_path / "missing.safetensors", "abc", 3, "no file"),
                                    (tmp_path / "junk.safetensors", "abc", 3, "does not load")):
        (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
        with pytest.raises(ConfigError, match=f"^patching.entropy_table: .*{says}.*fit-entropy") as err:
            check_entropy_table(str(path), codec, size)
        assert "\n" not in str(err.value)


def _patcher(tmp_path, ends: set[int], size: int = 4, max_len: int = 3) -> Patcher:
    entropy = np.array([2.0 if code in ends else 0.5 for code in range(10)])
    EntropyTable(entropy=entropy, frames=np.ones(10, dtype=np.int64), codec="c").save(str(tmp_path / "e.safetensors"))
    return Patcher(PatchingConfig(strategy="entropy", size=size, max_len=max_len,
                                  entropy_table=str(tmp_path / "e.safetensors"), entropy_threshold=1.0), 1)


@pytest.mark.parametrize("codebooks", [1, 2])
def test_entropy_patches_end_after_unpredictable_frames_at_max_len_and_at_span_ends(tmp_path, codebooks):
    vocab = Vocab(text_size=20, speech_codebook_size=10, n_codebooks=codebooks)
    patcher = _patcher(tmp_path, ends={3, 7})
    codes = [1, 3, 2, 2, 2, 2, 7, 7, 5, 1]  # frames' first-codebook codes
    tokens = [vocab.speech_id(code, c) for code in codes for c in range(codebooks)]
    piece = Piece()
    render_span(piece, Span(True, tokens), vocab, patcher, aligned=False, marker=False)
    frames = [n // codebooks for n in piece.patch_lengths]
    # after 3 (entropy), a run of 2s split at max_len 3, after 7 (entropy) twice, then the span's end
    assert frames == [2, 3, 2, 1, 2]
    assert piece.patch_kinds == [KIND_ENTROPY] * 5
    assert piece.patch_closed_early == [False, False, False, False, True]
    assert patcher.aligned_probability(0) == 0.0


def test_the_default_threshold_gives_patches_of_size_frames_on_average(tmp_path):
    rng = np.random.default_rng(1)
    weights = 1.0 / np.sqrt(np.arange(1, 65))  # uneven code frequencies, none above 7% of the frames
    sequences = [rng.choice(64, size=200, p=weights / weights.sum()) for _ in range(50)]
    table = EntropyTable.fit(sequences, 64, codec="c", smoothing=0.1)
    table.save(str(tmp_path / "t.safetensors"))
    vocab = Vocab(text_size=20, speech_codebook_size=64)
    for size in (2, 4):
        patcher = Patcher(PatchingConfig(strategy="entropy", size=size, max_len=64,
                                         entropy_table=str(tmp_path / "t.safetensors")), 1)
        piece = Piece()
        for codes in sequences:
            render_span(piece, Span(True, [vocab.speech_id(int(c)) for c in codes]), vocab, patcher, False, False)
        mean = np.mean(piece.patch_lengths)
        assert size * 0.8 < mean < size * 1.25, (size, mean)


def test_fit_entropy_then_the_loader_cuts_entropy_patches_and_checks_the_table(tmp_path, capsys):
    corpus = units_corpus(tmp_path / "corpus", n_speech_shards=2, samples_per_shard=6, codebook_size=2048)
    data = [f"data.sources[0].path={corpus['speech']}", f"data.sources[1].path={corpus['text']}",
            f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units"]
    table = tmp_path / "entropy.safetensors"
    assert main(["data", "fit-entropy", str(RECIPES / "debug_cpu.yaml"), *data, "--out", str(table)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["documents"] == 12 and summary["frames"] > 0 and summary["codes_seen"] > 10
    entropy = ["patching.strategy=entropy", f"patching.entropy_table={table}", "data.seq_units=64"]
    assert main(["data", "inspect", str(RECIPES / "debug_cpu.yaml"), *data, *entropy, "--batches", "3"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["tokens_per_patch_entropy"] > 1 and stats["tokens_per_patch_static"] is None
    # A table fitted for another vocabulary (here: 1024 codes per codebook) is refused at start-up, in one line.
    assert main(["train", str(RECIPES / "debug_cpu.yaml"), "--check", *data, *entropy,
                 "model.vocab.speech_codebook_size=1024", f"run_dir={tmp_path / 'run'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "patching.entropy_table" in lines[0] and "another codec" in lines[0], lines
    assert main(["train", str(RECIPES / "debug_cpu.yaml"), "--check", *data, "patching.strategy=entropy",
                 f"run_dir={tmp_path / 'run'}"]) == 2
    assert "fit-entropy" in capsys.readouterr().err
