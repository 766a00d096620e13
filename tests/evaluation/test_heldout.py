"""Held-out loss: one pass over held-out shards, the same tokens for the baseline and the LST, and numbers equal to
a per-document forward pass without batching or padding."""

import json
import subprocess
import sys

import pytest
import torch

from helpers import debug_config, static_partition, write_export
from helpers.data import units_corpus, write_tar
from lst_train.config import SourceConfig
from lst_train.data.heldout import heldout_documents, heldout_row
from lst_train.data.skips import SkipCounter
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.evaluation.heldout import heldout_loss
from lst_train.evaluation.prompts import evaluation_patcher
from lst_train.loss import next_token_loss_sums
from lst_train.model import build_model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    paths = units_corpus(root, n_speech_shards=2, samples_per_shard=5, n_text_shards=1)
    write_tar(root / "speech" / "shard-bad.tar", [("bad", {"json": b"{not json"})])
    return paths


def _setup(corpus, arch, *overrides):
    cfg = debug_config(arch, "data.codec.kind=units", f"data.tokenizer={corpus['tokenizer']}", *overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    return cfg, model, SpeechTextTokenizer.from_config(cfg.data, model.vocab)


def _sources(corpus):
    return [SourceConfig(kind="speech", path=corpus["speech"], sequence="interleaved"),
            SourceConfig(kind="text", path=corpus["text"])]


def test_one_pass_and_the_same_tokens_for_every_architecture(corpus):
    cfg, lst, tokenizer = _setup(corpus, "lst")
    skips = SkipCounter()
    documents = heldout_documents(cfg.data, _sources(corpus), tokenizer, 1000, 4096, skips)
    assert sum(d.source == 0 for d in documents) == 10, "every speech record once, no second epoch"
    assert sum(d.source == 1 for d in documents) == 20
    assert skips.as_dict() == {"missing_json": 1}, "the bad record (no audio or units) counted once"
    patcher = evaluation_patcher("lst", cfg.patching, cfg.training.steps)
    for document in documents:
        lst_row = heldout_row(document, tokenizer.vocab, patcher, aligned=False)
        base_row = heldout_row(document, tokenizer.vocab, None, aligned=False)
        assert lst_row.tokens == base_row.tokens
        lengths, closed = static_partition([lst_row.tokens], tokenizer.vocab, cfg.patching.size)
        assert lst_row.patch_lengths == lengths[0].tolist(), "the loader's partition, recomputed from the tokens"
        assert lst_row.patch_closed_early == closed[0].tolist()
    few = heldout_documents(cfg.data, _sources(corpus), tokenizer, 3, 4096, SkipCounter())
    assert [d.document.key for d in few] == [d.document.key for d in documents if d.source == 0][:3] + \
        [d.document.key for d in documents if d.source == 1][:3]
    short = SkipCounter()
    kept = heldout_documents(cfg.data, _sources(corpus), tokenizer, 1000, 64, short)
    assert short.as_dict()["too_long_for_heldout"] == len(documents) - len(kept) > 0


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_heldout_loss_equals_a_forward_pass_per_document(corpus, arch):
    cfg, model, tokenizer = _setup(corpus, arch)
    documents = heldout_documents(cfg.data, _sources(corpus), tokenizer, 6, 4096, SkipCounter())
    patcher = evaluation_patcher(arch, cfg.patching, cfg.training.steps)
    result = heldout_loss(model, documents, model.vocab, patcher, 2, batch_size=4, pad_to_multiple=64)
    speech_nats = speech_tokens = seconds = 0.0
    for document in (d for d in documents if d.source == 0):
        row = heldout_row(document, model.vocab, patcher, aligned=False)
        tokens = torch.tensor([row.tokens])
        partition = (torch.tensor([row.patch_lengths]), torch.tensor([row.patch_closed_early]))
        with torch.no_grad():
            logits = model(tokens, *(partition if arch == "lst" else ()))
        labels = torch.full_like(tokens, -100)
        labels[0, :-1] = tokens[0, 1:]
        sums = next_token_loss_sums(logits, labels, model.vocab)
        speech_nats += float(sums.speech)
        speech_tokens += int(sums.n_speech)
        seconds += sum(row.patch_seconds)
    speech = result["sources"][0]
    assert speech["documents"] == 6 and speech["speech_tokens"] == speech_tokens
    assert speech["nats_per_speech_token"] == pytest.approx(speech_nats / speech_tokens, rel=1e-5)
    assert speech["nats_per_speech_second"] == pytest.approx(speech_nats / seconds, rel=1e-5)
    assert result["total"]["documents"] == 12 and result["sources"][1]["speech_tokens"] == 0


def test_eval_cli_reports_heldout_loss(corpus, tmp_path):
    cfg, model, _ = _setup(corpus, "lst")
    export = write_export(cfg, model, tmp_path / "export")
    out = tmp_path / "heldout.json"
    run = subprocess.run([sys.executable, "-m", "lst_train", "eval", str(export), "--validation", corpus["speech"],
                          corpus["text"], "--documents", "4", "--out", str(out), "--device", "cpu"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "per speech second" in run.stdout
    result = json.loads(out.read_text())["heldout"]
    assert [s["documents"] for s in result["sources"]] == [4, 4]
    assert result["sources"][0]["nats_per_speech_second"] > 0


@pytest.mark.parametrize("task", ["asr", "tts"])
def test_task_heldout_loss_scores_the_answer_given_the_prompt(corpus, task):
    cfg, model, tokenizer = _setup(corpus, "lst")
    source = SourceConfig(kind="speech", path=corpus["speech"], sequence=task)
    documents = heldout_documents(cfg.data, [source], tokenizer, 4, 4096, SkipCounter())
    result = heldout_loss(model, documents, model.vocab, evaluation_patcher("lst", cfg.patching, 10), 1)["total"]
    answers = [d.document.spans[1] for d in documents]
    answer_tokens = sum(len(span.tokens) for span in answers)
    eos = len(documents)  # each answer's <eos> is a target too (specials count as text)
    if task == "asr":
        assert (result["text_tokens"], result["speech_tokens"]) == (answer_tokens + eos, 0)
        assert result["nats_per_speech_second"] is None, "the prompt's seconds are not scored speech"
    else:
        assert (result["text_tokens"], result["speech_tokens"]) == (eos, answer_tokens)
        seconds = sum(len(span.tokens) / span.frame_rate for span in answers)  # one codebook: a token per frame
        assert result["speech_seconds"] == pytest.approx(seconds)
    assert result["tokens"] == answer_tokens + eos
