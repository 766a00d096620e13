"""Byte-level BPE text tokenizer: train a tiktoken ranks file offline and encode/decode with tiktoken.

`tiktoken.get_encoding` downloads its ranks, which fails offline, so we train our own ranks on our corpus and
hand them to `tiktoken.Encoding` together with the same pre-tokenization pattern used for training.
"""

from __future__ import annotations

import base64
import heapq
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import regex
import tiktoken
import zstandard
from tqdm import tqdm

from lst_train.data.shards import bounded_lines

LOG = logging.getLogger(__name__)

# GPT-4 (cl100k_base) pre-tokenization; `regex` is needed for the \p{..} classes and possessive quantifiers.
PAT_STR = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
           r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
TRAIN_COMMAND = "lst-train tokenizer train --input ... --vocab-size N --out FILE.tiktoken"
BYTE_LEVEL = "bytes"
"""data.tokenizer value for byte-level text (no ranks file): a start before a BPE is trained."""

Pair = tuple[int, int]


def train_bpe(texts: Iterable[str], vocab_size: int, progress: bool = False) -> dict[bytes, int]:
    """Train byte-level BPE ranks: 0..255 are the single bytes, then one rank per merge, in merge order.

    Each step merges the most frequent adjacent token pair within pre-tokens (ties: smallest token ids), so
    the same input always gives the same ranks. Training stops early, returning fewer than `vocab_size` ranks,
    when no pair occurs at least twice. Pair counts are updated incrementally, touching only the pre-tokens
    that contain the merged pair.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (one rank per byte), got {vocab_size}")
    pattern = regex.compile(PAT_STR)
    pretoken_counts: Counter[str] = Counter()
    for text in texts:
        pretoken_counts.update(pattern.findall(text))
    byte_counts = {pretoken.encode("utf-8"): count for pretoken, count in pretoken_counts.items()}

    token_bytes = [bytes([b]) for b in range(256)]
    ranks = {token: rank for rank, token in enumerate(token_bytes)}
    words = [list(word) for word in byte_counts]
    word_counts = list(byte_counts.values())
    pair_counts: Counter[Pair] = Counter()
    pair_words: dict[Pair, set[int]] = {}
    for index, (word, count) in enumerate(zip(words, word_counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            pair_words.setdefault(pair, set()).add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    with tqdm(total=vocab_size - 256, desc="BPE merges", unit="merge", disable=not progress) as bar:
        while len(ranks) < vocab_size and heap:
            negative_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -negative_count:
                continue  # stale heap entry: the pair's count changed since it was pushed
            if -negative_count < 2:
                break
            merged = token_bytes[pair[0]] + token_bytes[pair[1]]
            if merged in ranks:  # the same bytes were already built from a different split
                merged_id = ranks[merged]
            else:
                merged_id = ranks[merged] = len(token_bytes)
                token_bytes.append(merged)
                bar.update()
            changed = _merge_pair(pair, merged_id, words, word_counts, pair_counts, pair_words)
            for changed_pair in changed:
                if pair_counts.get(changed_pair, 0) > 0:
                    heapq.heappush(heap, (-pair_counts[changed_pair], changed_pair))
    return ranks


def _merge_pair(pair: Pair, merged_id: int, words: list[list[int]], word_counts: list[int],
                pair_counts: Counter[Pair], pair_words: dict[Pair, set[int]]) -> set[Pair]:
    """Replace `pair` by `merged_id` in every word that has it, updating the counts; returns the pairs changed."""
    changed: set[Pair] = set()
    for index in pair_words.pop(pair):
        word, count = words[index], word_counts[index]
        merged_word: list[int] = []
        position = 0
        while position < len(word):
            if position + 1 < len(word) and (word[position], word[position + 1]) == pair:
                merged_word.append(merged_id)
                position += 2
            else:
                merged_word.append(word[position])
                position += 1
        old_pairs = Counter(zip(word, word[1:]))
        new_pairs = Counter(zip(merged_word, merged_word[1:]))
        for old_pair, n in old_pairs.items():
            pair_counts[old_pair] -= n * count
            if old_pair not in new_pairs and old_pair != pair:
                pair_words[old_pair].discard(index)
        for new_pair, n in new_pairs.items():
            pair_counts[new_pair] += n * count
            pair_words.setdefault(new_pair, set()).add(index)
        changed.update(p for p in old_pairs.keys() | new_pairs.keys() if old_pairs[p] != new_pairs[p])
        words[index] = merged_word
    del pair_counts[pair]
    return changed


def write_ranks(ranks: dict[bytes, int], path: str | Path) -> None:
    """Write ranks in tiktoken's `.tiktoken` format (base64 token, space, rank; one per line, by rank).

    `tiktoken.load.dump_tiktoken_bpe` writes the same format but needs the `blobfile` package.
    """
    lines = [base64.b64encode(token) + b" " + str(rank).encode() for token, rank in
             sorted(ranks.items(), key=lambda item: item[1])]
    Path(path).write_bytes(b"\n".join(lines) + b"\n")


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """Read and check a `.tiktoken` ranks file; ValueError (one line, naming the path) if missing or malformed.

    Not `tiktoken.load.load_tiktoken_bpe`: that caches by path under the temp dir, so a ranks file retrained in
    place would load stale.
    """
    def fail(reason: str) -> ValueError:
        return ValueError(f"{path}: {reason}; make one with `{TRAIN_COMMAND}`")

    try:
        content = Path(path).read_bytes()
    except OSError as err:
        raise fail(f"cannot read ranks file ({err.strerror or type(err).__name__})") from err
    ranks: dict[bytes, int] = {}
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as err:
            raise fail(f"malformed ranks file (line {line_number} is not `<base64 token> <rank>`)") from err
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise fail("malformed ranks file (ranks are not unique and numbered 0..n-1)")
    if any(bytes([b]) not in ranks for b in range(256)):
        raise fail("malformed ranks file (not byte-level: some of the 256 single bytes have no rank)")
    return ranks


class TextTokenizer:
    """A tiktoken encoding over our trained ranks, with no special tokens (our markers live in `Vocab`)."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding

    @classmethod
    def from_file(cls, path: str | Path) -> TextTokenizer:
        """Load a `.tiktoken` ranks file written by `write_ranks`; the encoding is named after the file stem.
        `BYTE_LEVEL` ('bytes') instead of a path: the 256 single bytes and no merges (text as UTF-8 bytes)."""
        if str(path) == BYTE_LEVEL:
            ranks = {bytes([i]): i for i in range(256)}
            return cls(tiktoken.Encoding(name="bytes", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens={}))
        ranks = read_ranks(path)
        return cls(tiktoken.Encoding(name=Path(path).stem, pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens={}))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special-token strings in it are encoded as plain text."""
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; bytes that are not valid UTF-8 (a cut multi-byte character) become U+FFFD."""
        return self.encoding.decode(list(ids))

    @property
    def n_vocab(self) -> int:
        return self.encoding.n_vocab


@dataclass
class TextStats:
    """What `read_training_texts` read: texts yielded, their characters, bad JSON lines (or lines over the loader's
    MAX_LINE_BYTES) skipped, and compressed files cut short (read up to the cut)."""

    texts: int = 0
    chars: int = 0
    bad_lines: int = 0
    bad_files: int = 0


def read_training_texts(paths: Iterable[str | Path], stats: TextStats | None = None) -> Iterator[str]:
    """Yield texts from `.txt` files (one per blank-line-separated paragraph) and `.jsonl` / `.jsonl.zst`
    files (field "text" of each JSON object line). A JSON line that does not parse or has no string "text"
    is skipped and counted in `stats.bad_lines`, so one broken record never stops a training run.
    """
    stats = stats if stats is not None else TextStats()
    for path in map(Path, paths):
        for text in _read_file_texts(path, stats):
            if text:
                stats.texts += 1
                stats.chars += len(text)
                yield text


def _read_file_texts(path: Path, stats: TextStats) -> Iterator[str]:
    name = path.name
    if name.endswith(".txt"):
        yield from (paragraph.strip() for paragraph in re.split(r"\n\s*\n", path.read_text("utf-8")))
    elif name.endswith((".jsonl", ".jsonl.zst")):
        with path.open("rb") as raw:
            # The loader's bounded reader: a decompression bomb's giant line is dropped as it streams.
            lines = bounded_lines(raw, name.endswith(".zst"))
            try:
                for line in lines:
                    if line is not None and not line.strip():
                        continue
                    try:
                        record = json.loads(line) if line is not None else None
                        text = record.get("text") if isinstance(record, dict) else None
                    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, deep nesting
                        text = None
                    if isinstance(text, str):
                        yield text
                    else:
                        stats.bad_lines += 1
            except zstandard.ZstdError as err:
                stats.bad_files += 1
                LOG.warning("%s: skipped the rest of the file (%s)", path, err)
    else:
        raise ValueError(f"{path}: unsupported training text file; expected .txt, .jsonl or .jsonl.zst")
