import argparse
import json
import random
from collections import Counter
from pathlib import Path

import pytest
import regex
import tiktoken.load
import zstandard

from lst_train.cli.tokenizer import add_tokenizer_parser
from lst_train.data.text_tokenizer import (BYTE_LEVEL, PAT_STR, TextStats, TextTokenizer, read_ranks, read_training_texts,
                                           train_bpe, write_ranks)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "In the beginning the speech model listened to the text and the text listened back.",
    "She sells sea shells by the sea shore, and the shells she sells are sea shells for sure.",
    "A tokenizer that has seen the training text should compress it far better than raw bytes.",
    "They'll say it's the weather, but we've learned that the numbers 1234 and 56789 matter too.",
    "Peter Piper picked a peck of pickled peppers; where's the peck of pickled peppers he picked?",
]


def english_paragraphs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(SENTENCES, k=5)) for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[bytes, int], Path]:
    ranks = train_bpe(english_paragraphs(200), 400)
    path = tmp_path_factory.mktemp("tok") / "english400.tiktoken"
    write_ranks(ranks, path)
    return ranks, path


def naive_bpe(texts: list[str], vocab_size: int) -> dict[bytes, int]:
    """Reference trainer: full recount every merge, same tie rule (highest count, then smallest id pair)."""
    words = Counter(tuple(p.encode()) for text in texts for p in regex.findall(PAT_STR, text))
    token_bytes = [bytes([b]) for b in range(256)]
    ranks = {t: r for r, t in enumerate(token_bytes)}
    while len(ranks) < vocab_size:
        pairs: Counter[tuple[int, int]] = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs or max(pairs.values()) < 2:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merged = token_bytes[best[0]] + token_bytes[best[1]]
        if merged not in ranks:
            ranks[merged] = len(token_bytes)
            token_bytes.append(merged)
        new_words: Counter[tuple[int, ...]] = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i:i + 2] == best:
                    out.append(ranks[merged])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return ranks


def test_single_bytes_first_and_deterministic(trained, tmp_path):
    ranks, path = trained
    assert len(ranks) == 400
    assert all(ranks[bytes([b])] == b for b in range(256))
    write_ranks(train_bpe(english_paragraphs(200), 400), tmp_path / "again.tiktoken")
    assert (tmp_path / "again.tiktoken").read_bytes() == path.read_bytes()


def test_incremental_training_matches_full_recount():
    texts = english_paragraphs(20, seed=1) + ["aaaa aaaaa abab ababab", "héllo wörld 🙂🙂 日本語日本語"]
    assert train_bpe(texts, 400) == naive_bpe(texts, 400)


def test_stops_early_when_no_pair_repeats():
    ranks = train_bpe(["abcd"], 1000)
    assert len(ranks) == 256
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe(["abcd"], 255)


def test_file_loads_in_tiktoken(trained, monkeypatch):
    ranks, path = trained
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken caches by path; read this file for real
    assert tiktoken.load.load_tiktoken_bpe(str(path)) == ranks == read_ranks(path)
    tokenizer = TextTokenizer.from_file(path)
    assert tokenizer.n_vocab == 400
    assert tokenizer.encoding.name == "english400"


@pytest.mark.parametrize("text", [
    "", "Hello, world!", "  leading and trailing spaces  \n\n\tand tabs\r\n",
    "naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어",
    "emoji 🙂👍🏽👨‍👩‍👧 flags 🇩🇪 and combining e\u0301",
    "<|endoftext|> is plain text here", "numbers 3.14159 1,000,000 and 12345678901234567890",
])
def test_round_trip(trained, text):
    tokenizer = TextTokenizer.from_file(trained[1])
    ids = tokenizer.encode(text)
    assert all(0 <= i < tokenizer.n_vocab for i in ids)
    assert tokenizer.decode(ids) == text


def test_compresses_training_text(trained):
    tokenizer = TextTokenizer.from_file(trained[1])
    text = "\n\n".join(english_paragraphs(200))
    assert len(tokenizer.encode(text)) < 0.5 * len(text.encode())


def test_read_training_texts(tmp_path):
    (tmp_path / "a.txt").write_text("first paragraph\nstill first\n\n  \nsecond paragraph\n\n\n")
    lines = [json.dumps({"text": "good one"}), "{not json", json.dumps({"txt": "no text field"}), "",
             json.dumps(["not", "an", "object"]), json.dumps({"text": 7}), json.dumps({"text": "good two"})]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(
        b"\n".join([json.dumps({"text": "zst ok"}).encode(), b"\xff\xfe bad utf-8"])))
    stats = TextStats()
    texts = list(read_training_texts([tmp_path / "a.txt", str(tmp_path / "b.jsonl"), tmp_path / "c.jsonl.zst"],
                                     stats))
    assert texts == ["first paragraph\nstill first", "second paragraph", "good one", "good two", "zst ok"]
    assert stats == TextStats(texts=5, chars=sum(map(len, texts)), bad_lines=5)
    with pytest.raises(ValueError, match="unsupported"):
        list(read_training_texts([tmp_path / "d.csv"]))


def test_read_training_texts_bounds_lines_and_survives_a_cut_file(tmp_path, monkeypatch):
    # The loader's bounded reader: a line over MAX_LINE_BYTES (a decompression bomb's) is dropped as it streams.
    monkeypatch.setattr("lst_train.data.shards.MAX_LINE_BYTES", 100)
    ok = [json.dumps({"text": f"line {i}"}).encode() for i in range(3)]
    huge = json.dumps({"text": "x" * 500}).encode()
    packed = zstandard.ZstdCompressor().compress(b"\n".join([ok[0], huge, ok[1]]) + b"\n")
    (tmp_path / "a.jsonl.zst").write_bytes(packed)
    (tmp_path / "cut.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(ok[2] + b"\n") +
                                             packed[: len(packed) // 2])
    stats = TextStats()
    texts = list(read_training_texts([tmp_path / "a.jsonl.zst", tmp_path / "cut.jsonl.zst"], stats))
    assert texts == ["line 0", "line 1", "line 2"]
    assert stats.bad_lines == 1 and stats.bad_files == 1


@pytest.mark.parametrize("content", [None, b"not a ranks file\n", b"YQ== 0\n"])
def test_bad_ranks_file_error(tmp_path, content):
    path = tmp_path / "tok.tiktoken"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        TextTokenizer.from_file(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "lst-train tokenizer train --input ... --vocab-size N --out FILE.tiktoken" in message


def test_cli_train(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": p}) + "\n" for p in english_paragraphs(50)) + "oops\n")
    out = tmp_path / "cli.tiktoken"
    parser = argparse.ArgumentParser(prog="lst-train")
    add_tokenizer_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "300", "--out", str(out)])
    args.run(args)
    summary = capsys.readouterr().out.strip()
    assert "\n" not in summary and summary.startswith(f"wrote 300 ranks to {out}") and "1 bad lines" in summary
    assert TextTokenizer.from_file(out).n_vocab == 300


def test_byte_level_text_needs_no_file_and_round_trips_any_utf8():
    tokenizer = TextTokenizer.from_file(BYTE_LEVEL)
    text = "Caf\u00e9 \u2014 \u00fcber 42!"
    ids = tokenizer.encode(text)
    assert tokenizer.n_vocab == 256 and ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
