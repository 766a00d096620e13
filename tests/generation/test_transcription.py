"""The model's own speech recognition: greedy text after `<bos> <s> speech <t>`, and WER / CER as summable counts."""

import json

import pytest
import torch

from helpers import debug_config, full_forward, write_export
from helpers.data import units_corpus
from lst_train.cli import main
from lst_train.config import SourceConfig
from lst_train.data.heldout import heldout_documents
from lst_train.data.skips import SkipCounter
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.generation.transcription import Transcript, error_counts, error_rates, transcribe
from lst_train.model import build_model
from lst_train.vocab import Vocab


def test_error_counts_of_known_transcripts():
    counts = error_counts([Transcript("a", "the cat sat", "the cat sat", True),
                           Transcript("b", "the cat sat", "the bat", True),  # a substitution and a deletion
                           Transcript("c", "on the mat", "", False)])  # nothing written: every word deleted
    assert (counts["word_errors"], counts["words"]) == (2 + 3, 9)
    assert (counts["char_errors"], counts["chars"]) == (1 + 4 + 10, 11 + 11 + 10)
    assert (counts["utterances"], counts["unfinished"]) == (3, 1)
    rates = error_rates(counts)
    assert rates["wer"] == pytest.approx(5 / 9) and rates["cer"] == pytest.approx(15 / 32)
    assert error_rates(error_counts([]))["wer"] is None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return units_corpus(tmp_path_factory.mktemp("asr"), n_speech_shards=1, samples_per_shard=4, n_text_shards=1)


def _asr_documents(cfg, corpus, n: int):
    tokenizer = SpeechTextTokenizer.from_config(cfg.data, Vocab.from_config(cfg.model.vocab))
    source = SourceConfig(kind="speech", path=corpus["speech"], sequence="asr")
    return [d.document for d in heldout_documents(cfg.data, [source], tokenizer, n, 4096, SkipCounter())], tokenizer


@pytest.mark.parametrize("arch", ["lst", "baseline"])
def test_the_transcript_is_the_models_greedy_text_after_the_speech(corpus, arch):
    cfg = debug_config(arch, "data.codec.kind=units", f"data.tokenizer={corpus['tokenizer']}", "model.init_std=0.2")
    model = build_model(cfg.model, seed=2).eval()
    documents, tokenizer = _asr_documents(cfg, corpus, 2)
    vocab = model.vocab
    for document in documents:
        transcript = transcribe(model, document, tokenizer.text, cfg.patching, max_tokens=6)
        tokens = [vocab.bos, vocab.speech_marker, *document.spans[0].tokens, vocab.text_marker]
        written = []
        for _ in range(6):  # greedy over text ids and <eos>, one full forward per token
            allowed = torch.zeros(vocab.size, dtype=torch.bool)
            allowed[: tokenizer.text.n_vocab] = allowed[vocab.eos] = True  # decodable text ids
            token = int(full_forward(model, cfg, tokens)[-1].masked_fill(~allowed, -torch.inf).argmax())
            if token == vocab.eos:
                break
            written.append(token)
            tokens.append(token)
        assert transcript.hypothesis == tokenizer.text.decode(written).strip()
        assert transcript.finished == (len(written) < 6)
        assert transcript.reference == tokenizer.text.decode(document.spans[1].tokens).strip()


def test_eval_cli_reports_word_error_rates(corpus, tmp_path, capsys):
    cfg = debug_config("lst", "data.codec.kind=units", f"data.tokenizer={corpus['tokenizer']}")
    export = write_export(cfg, build_model(cfg.model, seed=0), tmp_path / "export")
    out = tmp_path / "asr.json"
    assert main(["eval", str(export), "--asr", corpus["speech"], "--documents", "3", "--asr-max-tokens", "4",
                 "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())["asr"]
    documents, tokenizer = _asr_documents(cfg, corpus, 3)
    references = [tokenizer.text.decode(d.spans[1].tokens).split() for d in documents]
    assert result["utterances"] == 3 and result["words"] == sum(len(words) for words in references)
    assert [e["reference"].split() for e in result["examples"]] == references
    assert 0 < result["wer"] == result["word_errors"] / result["words"]
    assert f"    reference:  {result['examples'][0]['reference']}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--asr 'x.jsonl': end the glob in .tar"):
        main(["eval", str(export), "--asr", "x.jsonl"])
