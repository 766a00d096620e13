"""`lst-train eval convert`: faithful small copies of the published layouts convert to items that read back and
score; bad records are skipped and counted; bad arguments stop with one line."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lst_train.cli import main
from lst_train.corpora import espeak
from lst_train.evaluation.items import read_items
from lst_train.model import build_model

from helpers import debug_config, write_export
from helpers.data import write_tokenizer

RATE = 16000
WORD, WORD_GAP, COMMA, SENTENCE_GAP, EDGE = 0.08, 0.02, 0.12, 0.3, 0.1  # seconds
CONTEXT = ["Tom wanted a new bike.", "He saved his money all summer.", "He mowed lawns for his neighbours.",
           "At last he had enough money."]
RIGHT, WRONG = "He bought the bike, and rode it home.", "He decided he hated bikes forever."


def _speak(sentences: list[str], rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Tone bursts per word (a comma adds a short pause), sentences apart; and where the last sentence starts."""
    parts, boundary = [np.zeros(int(EDGE * RATE))], 0.0
    for k, sentence in enumerate(sentences):
        if k == len(sentences) - 1:
            boundary = sum(len(p) for p in parts) / RATE - SENTENCE_GAP / 2
        for word in sentence.split():
            t = np.arange(int(WORD * RATE)) / RATE
            parts += [0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t),
                      np.zeros(int((COMMA if word.endswith(",") else WORD_GAP) * RATE))]
        parts.append(np.zeros(int(SENTENCE_GAP * RATE)))
    parts.append(np.zeros(int(EDGE * RATE)))
    return np.concatenate(parts).astype(np.float32), boundary


def _story(folder: Path, name: str, sentences: list[str], seed: int, lead: float = 0.0) -> float:
    audio, boundary = _speak(sentences, np.random.default_rng(seed))
    audio = np.concatenate([np.zeros(int(lead * RATE), np.float32), audio])
    soundfile.write(folder / f"{name}.wav", audio, RATE, subtype="PCM_16")
    (folder / f"{name}.txt").write_text(" ".join(sentences) + "\n")
    return boundary + lead


def _release(folder: Path) -> dict[int, float]:
    """A spoken-StoryCloze-like sSC/ folder; returns each good story's context length in seconds."""
    folder.mkdir()
    good = {}
    for n in (0, 1, 2):
        # the right and wrong story share their context speech (same seed for the context words)
        good[n] = _story(folder, f"{n}_correct", CONTEXT + [RIGHT], seed=n)
        _story(folder, f"{n}_incorrect", CONTEXT + [WRONG], seed=n)
    good[3] = _story(folder, "3_a", CONTEXT + [RIGHT], seed=3)  # unmarked: first name in order is the right one
    _story(folder, "3_b", CONTEXT + [WRONG], seed=3)
    _story(folder, "4_correct", CONTEXT + [RIGHT], seed=4)  # its wrong story is missing
    _story(folder, "5_correct", CONTEXT + [RIGHT], seed=5)
    (folder / "5_incorrect.wav").write_bytes(b"RIFF not really a wave file")
    (folder / "5_incorrect.txt").write_text(" ".join(CONTEXT + [WRONG]))
    _story(folder, "6_correct", CONTEXT + [RIGHT], seed=6)
    _story(folder, "6_incorrect", CONTEXT + [WRONG], seed=6)
    (folder / "6_incorrect.txt").unlink()
    _story(folder, "7_correct", CONTEXT + [RIGHT], seed=7)
    _story(folder, "7_incorrect", CONTEXT + [WRONG], seed=7, lead=1.5)  # contexts of different lengths
    return good


def test_spoken_release_splits_into_scorable_items(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = _release(tmp_path / "sSC")
    assert main(["eval", "convert", "storycloze", str(tmp_path / "sSC"), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "4 items" in printed
    assert "'missing_audio': 1, 'missing_text': 1, 'unreadable_audio': 1, 'unsplit_audio': 1" in printed
    items = read_items(str(tmp_path / "out" / "items.jsonl"))
    assert [item.id for item in items] == ["0", "1", "2", "3"]
    assert {item.label for item in items} == {0, 1}  # the right ending is not always first
    for item in items:
        assert item.context.text == " ".join(CONTEXT)
        assert item.endings[item.label].text == RIGHT and item.endings[1 - item.label].text == WRONG
        context_seconds = soundfile.info(item.context.audio).duration
        assert abs(context_seconds - good[int(item.id)]) < 0.02
        right_seconds = soundfile.info(item.endings[item.label].audio).duration
        assert abs(right_seconds - (len(RIGHT.split()) * (WORD + WORD_GAP) + COMMA - WORD_GAP + SENTENCE_GAP * 1.5
                                    + EDGE)) < 0.02
    cfg = debug_config("lst", "model.vocab.text_size=300", f"data.tokenizer={tmp_path / 't.tiktoken'}")
    write_tokenizer(tmp_path / "t.tiktoken")
    export = write_export(cfg, build_model(cfg.model, seed=0), tmp_path / "export")
    # two items are enough to show the files score (the codec's encoder dominates the time)
    lines = (tmp_path / "out" / "items.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "out" / "two.jsonl").write_text("".join(lines[:2]))
    assert main(["eval", str(export), "--data", str(tmp_path / "out" / "two.jsonl"), "--settings", "s2s,t2t",
                 "--out", str(tmp_path / "results.json"), "--device", "cpu"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["s2s"]["items"] == results["t2t"]["items"] == 2 and results["skipped"] == {}


def _hellaswag(path: Path) -> None:
    records = [
        {"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
         "ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain", "label": 3,
         "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                     "is holding a rubik's cube.", "starts pulling up roofing on a roof."], "source_id": "v_1"},
        {"ind": 92, "activity_label": "Clean a faucet", "ctx_a": "[header] How to clean a faucet [title] Wipe it .",
         "ctx_b": "", "ctx": "[header] How to clean a faucet [title] Wipe it .", "split": "val",
         "split_type": "zeroshot", "label": 0,
         "endings": ["Use a soft cloth , then dry it.", "Paint the sink.", "Sell the house.", "Buy a faucet."],
         "source_id": "wikihow~1"},
        {"ind": 7, "ctx": "A test item has no label.", "split": "test", "endings": ["a.", "b.", "c.", "d."]},
        {"ind": 8, "ctx": "The label points nowhere.", "label": 9, "endings": ["a.", "b.", "c.", "d."]},
        {"ind": 9, "ctx": "   ", "label": 0, "endings": ["a.", "b.", "c.", "d."]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n")


def _espeak_missing() -> bool:
    try:
        espeak.sample_rate()
    except espeak.EspeakMissing:
        return True
    return False


@pytest.mark.skipif(_espeak_missing(), reason="libespeak-ng is not installed")
def test_hellaswag_is_spoken_with_word_timings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _hellaswag(tmp_path / "hellaswag_val.jsonl")
    assert main(["eval", "convert", "hellaswag", str(tmp_path / "hellaswag_val.jsonl"), "--out",
                 str(tmp_path / "out")]) == 0
    assert "2 items; skipped {'invalid_json': 3, 'missing_text': 1}" in capsys.readouterr().out
    items = read_items(str(tmp_path / "out" / "items.jsonl"))
    assert [(item.id, item.label, len(item.endings)) for item in items] == [("24", 3, 4), ("92", 0, 4)]
    assert items[1].context.text == "How to clean a faucet. Wipe it."
    assert items[1].endings[0].text == "Use a soft cloth, then dry it."
    for segment in [s for item in items for s in (item.context, *item.endings)]:
        seconds = soundfile.info(segment.audio).duration
        assert [w["word"] for w in segment.words] == segment.text.split()
        assert 0 <= segment.words[0]["start"] < segment.words[-1]["end"] <= seconds + 1e-3
    assert len(list((tmp_path / "out" / "audio").iterdir())) == 10
    with pytest.raises(SystemExit, match=r"has no voice 'xx-nowhere' \(see `espeak-ng --voices=en`\)$"):
        main(["eval", "convert", "hellaswag", str(tmp_path / "hellaswag_val.jsonl"), "--voice", "xx-nowhere",
              "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()


def _stops_with_one_line(cases: list[tuple[list[str], str]]) -> None:
    """Each `lst-train eval convert ARGV` stops with one line matching its pattern."""
    for argv, message in cases:
        with pytest.raises(SystemExit, match=message) as stop:
            main(["eval", "convert", *argv])
        assert "\n" not in str(stop.value)


def test_text_sources_without_tts_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    columns = ["InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4",
               "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2", "AnswerRightEnding"]
    with open(tmp_path / "cloze_test_val__spring2016.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerow(["id-a", *CONTEXT, WRONG, RIGHT, "2"])
        writer.writerow(["id-b", *CONTEXT, RIGHT, "", "1"])
        writer.writerow(["id-c", *CONTEXT, RIGHT, WRONG, "3"])
    assert main(["eval", "convert", "storycloze", str(tmp_path / "cloze_test_val__spring2016.csv"), "--no-tts",
                 "--out", str(tmp_path / "sc")]) == 0
    assert "1 items; skipped {'missing_text': 2}" in capsys.readouterr().out
    [item] = read_items(str(tmp_path / "sc" / "items.jsonl"))
    assert (item.id, item.context.text, item.label) == ("id-a", " ".join(CONTEXT), 1)
    assert [e.text for e in item.endings] == [WRONG, RIGHT] and not item.context.audio and not item.context.words

    _hellaswag(tmp_path / "h.jsonl")
    assert main(["eval", "convert", "hellaswag", str(tmp_path / "h.jsonl"), "--no-tts", "--limit", "1",
                 "--out", str(tmp_path / "h")]) == 0
    assert len(read_items(str(tmp_path / "h" / "items.jsonl"))) == 1
    assert not (tmp_path / "h" / "audio").exists()  # text-only items: no empty audio/ folder left

    (tmp_path / "rocstories.csv").write_text("storyid,storytitle,sentence1\nx,y,z\n")
    (tmp_path / "empty").mkdir()
    _stops_with_one_line([
        (["storycloze", str(tmp_path / "rocstories.csv"), "--out", str(tmp_path / "a")],
         r"lacks columns \['InputSentence1'.*: pass a StoryCloze cloze_test CSV"),
        (["storycloze", str(tmp_path / "empty"), "--out", str(tmp_path / "b")],
         r"has no N_\*.wav stories: pass the sSC/ or tSC/ folder"),
        (["hellaswag", str(tmp_path / "nowhere.jsonl"), "--out", str(tmp_path / "c")],
         r"nowhere.jsonl does not exist: pass the downloaded hellaswag file"),
        (["hellaswag", str(tmp_path / "h.jsonl"), "--out", str(tmp_path / "h")],
         r"is not empty: choose a new --out")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-made is left behind
    assert (tmp_path / "empty").is_dir()


def _zerospeech(folder: Path, columns: list[str], rows: list[dict], absent: set[str] = frozenset()) -> None:
    """A ZeroSpeech 2021 lexical/ or syntactic/ dev folder: gold.csv and a tone-burst wav per row."""
    folder.mkdir(parents=True)
    with open(folder / "gold.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for number, row in enumerate(rows):
            writer.writerow(row)
            if row["filename"] not in absent:
                text = row.get("word") or row.get("transcription")
                audio, _ = _speak([text], np.random.default_rng(number))
                soundfile.write(folder / f"{row['filename']}.wav", audio, RATE, subtype="PCM_16")


def test_swuggy_and_sblimp_folders_become_pair_items_that_score(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    lexical = ["filename", "voice", "frequency", "word", "phones", "id", "correct", "length"]
    rows = [{"filename": f"w{k}", "voice": voice, "frequency": 10, "word": word, "phones": "x", "id": pair,
             "correct": correct, "length": 4}
            for k, (voice, word, pair, correct) in enumerate([
                ("Alex", "house", 1, 1), ("Alex", "hause", 1, 0), ("Bruce", "house", 1, 1),
                ("Bruce", "hause", 1, 0), ("Alex", "garden", 2, 1),  # no nonword: unpaired
                ("Alex", "river", 3, 1), ("Alex", "rivel", 3, 0)])]  # one wav missing
    _zerospeech(tmp_path / "lexical" / "dev", lexical, rows, absent={"w6"})
    assert main(["eval", "convert", "swuggy", str(tmp_path / "lexical" / "dev"), "--out", str(tmp_path / "sw")]) == 0
    assert "2 items; skipped {'missing_audio': 1, 'unpaired': 1}" in capsys.readouterr().out
    items = read_items(str(tmp_path / "sw" / "items.jsonl"))
    assert [item.id for item in items] == ["1/Alex", "1/Bruce"] and not (tmp_path / "sw" / "audio").exists()
    for item in items:
        assert item.context is None and len(item.endings) == 2
        assert item.endings[item.label].text == "house" and item.endings[1 - item.label].text == "hause"
        assert Path(item.endings[item.label].audio).parent == (tmp_path / "lexical" / "dev").resolve()

    syntactic = ["filename", "type", "subtype", "voice", "id", "correct", "transcription"]
    rows = [{"filename": f"s{k}", "type": kind, "subtype": "none", "voice": "Alex", "id": 0, "correct": correct,
             "transcription": text}
            for k, (kind, correct, text) in enumerate([
                ("anaphor", 1, "the boys saw themselves"), ("anaphor", 0, "the boys saw himself"),
                ("island", 0, "what did he leave before eat"), ("island", 1, "what did he eat before leaving")])]
    _zerospeech(tmp_path / "syntactic" / "dev", syntactic, rows)
    assert main(["eval", "convert", "sblimp", str(tmp_path / "syntactic" / "dev"), "--out", str(tmp_path / "sb"),
                 "--seed", "3"]) == 0
    items = read_items(str(tmp_path / "sb" / "items.jsonl"))
    assert [item.id for item in items] == ["anaphor/none/0/Alex", "island/none/0/Alex"]
    assert [item.endings[item.label].text for item in items] == ["the boys saw themselves",
                                                                 "what did he eat before leaving"]

    cfg = debug_config("lst", "model.vocab.text_size=300", f"data.tokenizer={tmp_path / 't.tiktoken'}")
    write_tokenizer(tmp_path / "t.tiktoken")
    export = write_export(cfg, build_model(cfg.model, seed=0), tmp_path / "export")
    assert main(["eval", str(export), "--data", str(tmp_path / "sb" / "items.jsonl"), "--settings", "s2s,t2t,s2t",
                 "--out", str(tmp_path / "results.json"), "--device", "cpu"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["s2s"]["items"] == results["t2t"]["items"] == 2 and results["s2t"]["items"] == 0
    assert results["skipped"] == {"no_context": 2}  # a pair has no context to cross modality from
    assert main(["eval", str(export), "--data", str(tmp_path / "sb" / "items.jsonl"), "--out",
                 str(tmp_path / "default.json"), "--device", "cpu"]) == 0
    default = json.loads((tmp_path / "default.json").read_text())
    assert set(default) == {"s2s", "t2t", "skipped"} and default["skipped"] == {}  # a pair set: S→S and T→T
    assert default["s2s"] == results["s2s"] and default["t2t"] == results["t2t"]
    with pytest.raises(SystemExit, match=r"--data .*nowhere.jsonl: no such file"):
        main(["eval", str(export), "--data", str(tmp_path / "nowhere.jsonl")])

    (tmp_path / "nothing").mkdir()
    _stops_with_one_line([
        (["sblimp", str(tmp_path / "lexical" / "dev"), "--out", str(tmp_path / "a")],
         r"lacks columns \['transcription', 'type'\]: pass the ZeroSpeech 2021 syntactic/dev or syntactic/test"),
        (["swuggy", str(tmp_path / "nothing"), "--out", str(tmp_path / "b")],
         r"gold.csv not found: pass the ZeroSpeech 2021 lexical/dev \(or /test\) folder")])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
