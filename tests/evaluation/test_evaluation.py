"""Multiple-choice scoring: equals a hand computation, runs in all four settings, and ranks what a model learned."""

import json
import random
from pathlib import Path

import pytest
import torch

from lst_train.data.skips import SkipCounter
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.data.text_tokenizer import TextTokenizer
from lst_train.data.pieces import row_partition
from lst_train.evaluation.items import Segment, read_items
from lst_train.evaluation.prompts import PromptBuilder, evaluation_patcher
from lst_train.evaluation.scoring import ending_scores, evaluate
from lst_train.loss import labels_from_tokens, next_token_loss_sums
from lst_train.model import build_model

from helpers import ASSETS, debug_config, write_export
from helpers.data import WORDS, write_tokenizer



@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return TextTokenizer.from_file(write_tokenizer(tmp_path_factory.mktemp("tok") / "t.tiktoken"))


def _builder(cfg, model, tokenizer):
    return PromptBuilder(SpeechTextTokenizer(model.vocab, tokenizer, cfg.data.codec),
                         evaluation_patcher(cfg.model.arch, cfg.patching, cfg.training.steps))


def _write_items(path: Path, items: list[dict]) -> str:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return str(path)


def test_scores_equal_a_hand_computation(tokenizer, tmp_path):
    cfg = debug_config("lst", "model.vocab.text_size=300")
    model = build_model(cfg.model).eval()
    builder = _builder(cfg, model, tokenizer)
    item = read_items(_write_items(tmp_path / "i.jsonl", [{
        "context": {"text": "the quick brown fox", "audio": str(ASSETS / "0880.flac")},
        "endings": [{"text": "jumps over", "audio": str(ASSETS / "0930.wav")}, {"text": "a lazy dog sings"}],
        "label": 0}]))[0]
    rows = [builder.build(item.context, ending, "t2t") for ending in item.endings]
    rows.append(builder.build(item.context, item.endings[0], "s2s"))
    rows.append(builder.build(item.context, item.endings[1], "s2t"))
    batched = ending_scores(model, rows, model.vocab, batch_size=4)
    for (piece, start), (total, count) in zip(rows, batched):
        tokens = torch.tensor([piece.tokens])
        with torch.no_grad():
            logits = model(tokens, torch.tensor([piece.patch_lengths]), torch.tensor([piece.patch_closed_early]))[0]
        expected = sum(torch.log_softmax(logits[t - 1], -1)[piece.tokens[t]].item() for t in range(start,
                                                                                                   len(piece.tokens)))
        assert count == len(piece.tokens) - start > 0
        assert abs(total - expected) < 1e-4
    speech_piece, start = rows[2]
    assert all(model.vocab.is_speech(torch.tensor(speech_piece.tokens[start:])))


def test_a_pair_item_scores_each_candidate_from_the_start_of_a_row(tokenizer, tmp_path):
    """No context: the row is <bos> <marker> candidate and every candidate token is scored; a cross-modal setting
    and an empty text candidate are skipped and counted, never scored as a free zero."""
    cfg = debug_config("lst", "model.vocab.text_size=300")
    model = build_model(cfg.model).eval()
    builder = _builder(cfg, model, tokenizer)
    word, nonword = ({"text": t, "audio": str(ASSETS / a)} for t, a in (("house", "0880.flac"), ("hause", "0930.wav")))
    skips = SkipCounter()
    items = read_items(_write_items(tmp_path / "i.jsonl", [
        {"id": "pair", "endings": [nonword, word], "label": 1},
        {"id": "null-context", "context": None, "endings": [word, nonword], "label": 0},
        {"id": "empty", "endings": [word, {"text": " ", "audio": str(ASSETS / "0930.wav")}], "label": 0}]), skips)
    assert [item.context for item in items] == [None] * 3
    for setting, marker in (("t2t", model.vocab.text_marker), ("s2s", model.vocab.speech_marker)):
        piece, start = builder.build(None, items[0].endings[1], setting)
        assert piece.tokens[:2] == [model.vocab.bos, marker] and start == 2
        tokens = torch.tensor([piece.tokens])
        with torch.no_grad():
            logits = model(tokens, torch.tensor([piece.patch_lengths]), torch.tensor([piece.patch_closed_early]))[0]
        expected = sum(torch.log_softmax(logits[t - 1], -1)[piece.tokens[t]].item()
                       for t in range(2, len(piece.tokens)))
        [(total, count)] = ending_scores(model, [(piece, start)], model.vocab)
        assert count == len(piece.tokens) - 2 and abs(total - expected) < 1e-4
    results = evaluate(model, builder, items, ["s2s", "t2t", "s2t", "t2s"], skips)
    assert [results[s]["items"] for s in ("s2s", "t2t", "s2t", "t2s")] == [3, 2, 0, 0]
    assert skips.as_dict() == {"missing_text": 1, "no_context": 6}


def test_a_same_modality_ending_is_patched_as_one_span_with_the_context(tokenizer):
    """S→S: the static grid runs on across the context/ending join (no short patch there, which training never
    shows), exactly as the loader patches one utterance; only the row's last patch may be short."""
    cfg = debug_config("lst", "model.vocab.text_size=300", "model.vocab.n_codebooks=2", "patching.size=3")
    model = build_model(cfg.model).eval()
    builder = _builder(cfg, model, tokenizer)
    context = Segment("the quick brown fox", str(ASSETS / "0880.flac"))
    ending = Segment("jumps over", str(ASSETS / "0930.wav"))
    context_tokens = len(builder.speech_span(context).tokens)
    assert context_tokens % 6, "the context must end off the static grid for this test to mean anything"
    piece, start = builder.build(context, ending, "s2s")
    assert start == 2 + context_tokens and piece.tokens[:2] == [model.vocab.bos, model.vocab.speech_marker]
    assert piece.patch_lengths[2:-1] == [6] * (len(piece.patch_lengths) - 3)
    assert (piece.patch_lengths, piece.patch_closed_early) == row_partition(piece.tokens, model.vocab,
                                                                            builder.patcher)


def test_all_four_settings_run_on_a_tiny_set(tokenizer, tmp_path):
    cfg = debug_config("lst", "model.vocab.text_size=300", "patching.strategy=curriculum")
    model = build_model(cfg.model).eval()
    audio = [{"text": "he was not an ill disposed young man", "audio": str(ASSETS / "0880.flac")},
             {"text": "he might even have been made amiable himself", "audio": str(ASSETS / "0930.wav")}]
    items = [{"id": "a", "context": audio[0], "endings": [audio[1], audio[0]], "label": 0},
             {"id": "b", "context": audio[1], "endings": [audio[0], audio[1]], "label": 1},
             {"id": "text-only", "context": {"text": "one"}, "endings": [{"text": "two"}, {"text": "three"}],
              "label": 0},
             {"id": "broken", "context": {"text": "x"}, "endings": [{"text": "y"}], "label": 3}]
    skips = SkipCounter()
    parsed = read_items(_write_items(tmp_path / "i.jsonl", items), skips)
    assert len(parsed) == 3 and skips.as_dict() == {"invalid_json": 1}
    results = evaluate(model, _builder(cfg, model, tokenizer), parsed, ["s2s", "t2t", "s2t", "t2s"], skips)
    assert results["t2t"]["items"] == 3
    assert all(results[s]["items"] == 2 for s in ("s2s", "s2t", "t2s"))
    assert skips.as_dict()["missing_audio"] == 3
    builder = _builder(cfg, model, tokenizer)
    correct = 0
    for item in parsed:  # the same counts item by item, each ending scored in its own batch
        sums = [ending_scores(model, [builder.build(item.context, e, "t2t")], model.vocab)[0][0] for e in item.endings]
        correct += int(max(range(len(sums)), key=sums.__getitem__) == item.label)
    assert results["t2t"]["correct_sum"] == correct and results["t2t"]["accuracy_sum"] == correct / 3


def test_a_bad_item_is_skipped_and_counted_and_the_evaluation_goes_on(tokenizer, tmp_path):
    cfg = debug_config("lst", "model.vocab.text_size=300")
    model = build_model(cfg.model).eval()
    good = {"text": "he was not an ill disposed young man", "audio": str(ASSETS / "0880.flac")}
    (tmp_path / "copy.flac").write_bytes((ASSETS / "0880.flac").read_bytes())
    words = json.loads((ASSETS / "0880.json").read_text())["words"]
    words[2]["word"] = ""  # one timing entry with empty text, as an outside-made spoken set had
    bad_words = {"text": good["text"], "audio": str(tmp_path / "copy.flac"), "words": words}
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all")
    unreadable = {"text": "y", "audio": str(tmp_path / "garbage.wav")}
    items = [{"id": "bad-words", "context": bad_words, "endings": [good, good], "label": 0},
             {"id": "unreadable", "context": good, "endings": [unreadable, good], "label": 1},
             {"id": "fine", "context": good, "endings": [good, good], "label": 0}]
    skips = SkipCounter()
    parsed = read_items(_write_items(tmp_path / "i.jsonl", items), skips)
    results = evaluate(model, _builder(cfg, model, tokenizer), parsed, ["s2s", "t2t"], skips)
    assert results["s2s"]["items"] == 1 and results["t2t"]["items"] == 3
    assert skips.as_dict() == {"invalid_words": 1, "unreadable_audio": 1}


def test_a_model_trained_on_the_right_endings_picks_them(tokenizer, tmp_path):
    cfg = debug_config("lst", "model.vocab.text_size=300")
    model = build_model(cfg.model, seed=0)
    rng = random.Random(0)
    raw = []
    for i in range(12):
        context = " ".join(rng.choice(WORDS) for _ in range(6))
        right, wrong = (" ".join(rng.choice(WORDS) for _ in range(4)) for _ in range(2))
        label = i % 2
        endings = [{"text": wrong}, {"text": wrong}]
        endings[label] = {"text": right}
        raw.append({"id": str(i), "context": {"text": context}, "endings": endings, "label": label})
    items = read_items(_write_items(tmp_path / "i.jsonl", raw))
    builder = _builder(cfg, model, tokenizer)
    rows = [builder.build(item.context, item.endings[item.label], "t2t")[0] for item in items]
    width = max(len(r.tokens) for r in rows)
    tokens = torch.tensor([r.tokens + [model.vocab.pad] * (width - len(r.tokens)) for r in rows])
    patch_lengths = torch.tensor([r.patch_lengths + [1] * (width - len(r.tokens)) for r in rows])
    labels = labels_from_tokens(tokens, model.vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(150):
        loss = next_token_loss_sums(model(tokens, patch_lengths), labels, model.vocab).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    results = evaluate(model.eval(), builder, items, ["t2t"], SkipCounter())
    assert results["t2t"]["items"] == 12
    assert results["t2t"]["accuracy_sum"] == results["t2t"]["accuracy_mean"] == 1.0


def test_eval_command_one_rank_equals_two_ranks(tokenizer, tmp_path):
    import subprocess
    import sys

    cfg = debug_config("lst", "model.vocab.text_size=300", f"data.tokenizer={tmp_path / 't.tiktoken'}")
    write_tokenizer(tmp_path / "t.tiktoken")
    export = write_export(cfg, build_model(cfg.model, seed=0), tmp_path / "export")
    rng = random.Random(1)
    data = _write_items(tmp_path / "i.jsonl", [
        {"id": str(i), "context": {"text": " ".join(rng.choice(WORDS) for _ in range(5))},
         "endings": [{"text": rng.choice(WORDS)} for _ in range(4)], "label": i % 4} for i in range(9)])
    outputs = {}
    for launcher in ([sys.executable, "-m", "lst_train"],
                     [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                      "-m", "lst_train"]):
        out = tmp_path / f"r{len(outputs)}.json"
        result = subprocess.run([*launcher, "eval", str(export), "--data", data, "--settings", "t2t",
                                 "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        outputs[len(outputs)] = json.loads(out.read_text())
    assert outputs[0]["t2t"]["items"] == 9
    assert outputs[0]["t2t"] == outputs[1]["t2t"]


def test_demo_eval_set_is_spoken_held_out_and_scorable(tokenizer, tmp_path):
    import re

    import soundfile

    from lst_train.corpora import espeak
    from lst_train.corpora.demo_corpus import read_kjv, split_books
    from lst_train.corpora.demo_eval import build_demo_eval

    summary = build_demo_eval(tmp_path / "eval", n_items=4, seed=3, n_pairs=6)
    assert summary["items"] + summary["dropped"] == 4 and summary["items"] >= 3
    parts = split_books(read_kjv())
    seen = {v.text for v in parts["speech"] + parts["text"]}
    for name, n_endings in (("storycloze_2way.jsonl", 2), ("storycloze_4way.jsonl", 4)):
        items = read_items(str(tmp_path / "eval" / name))
        assert len(items) == summary["items"]
        for item in items:
            assert len(item.endings) == n_endings and item.context.text not in seen
            assert soundfile.info(item.context.audio).duration > 1.0 and item.context.words
    cfg = debug_config("lst", "model.vocab.text_size=300")
    model = build_model(cfg.model).eval()
    results = evaluate(model, _builder(cfg, model, tokenizer), items, ["s2s", "t2s"], SkipCounter())
    assert results["s2s"]["items"] == results["t2s"]["items"] == summary["items"]
    assert summary["pairs"] == {"lexical": 6, "syntax": 6}
    vocabulary = {w for v in read_kjv() for w in re.findall(r"\b[a-z]+\b", v.text.lower())}
    pairs = {kind: read_items(str(tmp_path / "eval" / f"pairs_{kind}.jsonl")) for kind in ("lexical", "syntax")}
    for kind, kind_items in pairs.items():
        assert {item.label for item in kind_items} == {0, 1}  # the right candidate is not always first
        for item in kind_items:
            right, wrong = item.endings[item.label].text, item.endings[1 - item.label].text
            assert item.context is None and right != wrong
            assert all(e.words and soundfile.info(e.audio).duration > 0.2 for e in item.endings)
            if kind == "lexical":  # one letter changed, into a string no KJV verse has, that espeak says otherwise
                assert right in vocabulary and wrong not in vocabulary and len(right) == len(wrong)
                assert sum(a != b for a, b in zip(right, wrong)) == 1
                assert espeak.phonemes(right) != espeak.phonemes(wrong)
            else:  # the same words, two neighbours swapped; no capital gives the order away
                a, b = right.split(), wrong.split()
                diff = [i for i in range(len(a)) if a[i] != b[i]]
                assert sorted(a) == sorted(b) and len(diff) == 2 and diff[1] == diff[0] + 1 and right == right.lower()
    results = evaluate(model, _builder(cfg, model, tokenizer), pairs["syntax"], ["s2s", "t2t"], SkipCounter())
    assert results["s2s"]["items"] == results["t2t"]["items"] == 6


def test_an_untrained_model_scores_near_chance(tokenizer, tmp_path):
    cfg = debug_config("lst", "model.vocab.text_size=300")
    model = build_model(cfg.model, seed=1).eval()
    rng = random.Random(2)
    raw = [{"id": str(i), "context": {"text": " ".join(rng.choice(WORDS) for _ in range(6))},
            "endings": [{"text": " ".join(rng.choice(WORDS) for _ in range(3))} for _ in range(2)],
            "label": rng.randrange(2)} for i in range(60)]
    items = read_items(_write_items(tmp_path / "i.jsonl", raw))
    result = evaluate(model, _builder(cfg, model, tokenizer), items, ["t2t"], SkipCounter())["t2t"]
    assert 0.3 <= result["accuracy_sum"] <= 0.7 and 0.3 <= result["accuracy_mean"] <= 0.7
