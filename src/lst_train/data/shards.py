"""Shard files -> raw records, split by rank and loader worker, with an exact resumable cursor.

A speech shard is a WebDataset-style tar: consecutive members sharing a key (the name up to its first dot) form
one sample, e.g. `KEY.flac` + `KEY.json`, or `KEY.units.json`. A text shard is `.jsonl` or `.jsonl.zst`, one record
per line. The cursor's state is (epoch, shard position, records consumed in that shard): restoring it reopens the
shard and skips records without decoding them.
"""

import glob
import io
import os
import random
import tarfile
from dataclasses import dataclass
from typing import Callable, Iterator

import zstandard

from lst_train.data.skips import LOG, NoUsableData, SkipCounter, SkipSample, SourceExhausted


@dataclass
class RawRecord:
    """One sample of a shard before decoding: member bytes by extension (speech) or one line (text)."""

    shard: str
    """Path of the shard file."""
    name: str
    """The sample key (speech) or line number (text)."""
    files: dict[str, bytes | None]
    """Member bytes by extension, e.g. {'flac': ..., 'json': ...} (None: unreadable); text: {'line': ...}."""
    defect: tuple[str, str] | None = None
    """(skip reason, detail) found while reading: the record is to be skipped (unsafe member, line too long)."""

    @property
    def key(self) -> str:
        """`shard-path:NAME`: where to look when it is skipped."""
        return f"{self.shard}:{self.name}"


def list_shards(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern, recursive=True))


def _unsafe(member: tarfile.TarInfo) -> str:
    """Why a member must not be trusted ('' if it can): links, absolute or '..' paths."""
    if member.issym() or member.islnk():
        return f"link {member.name} -> {member.linkname}"
    if member.name.startswith("/") or ".." in member.name.split("/"):
        return f"member path {member.name}"
    return ""


def _check_archive_end(path: str, end: int, skips: SkipCounter) -> None:
    """tarfile ends quietly at a missing, cut or garbled header past the first: unless the members stop at an
    end-of-archive (zero) block, the shard was cut or damaged there and what followed is lost (counted)."""
    with open(path, "rb") as f:
        f.seek(end)
        block = f.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        why = "the file ends" if not block else "a header is cut or garbled"
        skips.add("truncated_shard", path, f"no end-of-archive block after the last whole member: {why} at byte "
                                           f"{end} of {os.path.getsize(path)}; the rest of the shard is lost")


def tar_records(path: str, skips: SkipCounter) -> Iterator[RawRecord]:
    """Group consecutive tar members by key; a truncated tar ends the shard (counted) instead of failing. A sample
    with an unsafe member (link, absolute or '..' path) carries the defect, so the reader skips it whole."""
    key, files, defect = None, {}, None
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.isdir():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                member_key, _, ext = base.partition(".")
                if member_key != key and key is not None:
                    yield RawRecord(path, key, files, defect)
                    files, defect = {}, None
                key = member_key
                unsafe = _unsafe(member) or ("" if member.isfile() else f"special member {member.name}")
                if unsafe:
                    defect = defect or ("unsafe_member", unsafe)
                    continue
                try:
                    files[ext] = tar.extractfile(member).read()
                except (tarfile.TarError, OSError) as err:
                    skips.add("unreadable_member", f"{path}:{member.name}", str(err))
                    files[ext] = None
            end = tar.offset
        _check_archive_end(path, end, skips)
    except (tarfile.TarError, OSError, EOFError) as err:
        skips.add("truncated_shard", path, str(err))
    if key is not None:
        yield RawRecord(path, key, files, defect)


MAX_LINE_BYTES = 64 << 20
"""A text line longer than this is dropped without being held in memory (counted as line_too_long)."""
_ZSTD_INPUT_BYTES = 1 << 10
"""Compressed bytes per decompress call: zstd inflates at most ~32768:1, so one call yields at most ~32 MB."""


def _zstd_chunks(raw: io.BufferedIOBase) -> Iterator[bytes]:
    """Decompressed pieces of a (multi-frame) zstd stream, each of bounded size; a stream cut mid-frame raises
    ZstdError instead of ending quietly."""
    decompressor = zstandard.ZstdDecompressor()
    frame, fed = decompressor.decompressobj(), False
    while data := raw.read(1 << 20):
        for offset in range(0, len(data), _ZSTD_INPUT_BYTES):
            chunk = data[offset: offset + _ZSTD_INPUT_BYTES]
            while chunk:
                out = frame.decompress(chunk)
                fed, chunk = True, b""
                if out:
                    yield out
                if frame.eof:
                    chunk = frame.unused_data
                    frame, fed = decompressor.decompressobj(), False
    if fed:
        raise zstandard.ZstdError("stream ends inside a zstd frame")


def _bounded_lines(chunks: Iterator[bytes]) -> Iterator[bytes | None]:
    """Split a byte stream into lines without the newline; None for a line over MAX_LINE_BYTES (dropped as it
    streams, never held whole)."""
    parts: list[bytes] = []
    size, dropping = 0, False
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if dropping or size + end - start > MAX_LINE_BYTES:
                yield None
            else:
                yield b"".join(parts) + chunk[start:end]
            parts, size, dropping = [], 0, False
            start = end + 1
        if not dropping:
            parts.append(chunk[start:])
            size += len(chunk) - start
            if size > MAX_LINE_BYTES:
                parts, size, dropping = [], 0, True
    if dropping:
        yield None
    elif size:
        yield b"".join(parts)


def bounded_lines(raw: io.BufferedIOBase, compressed: bool) -> Iterator[bytes | None]:
    """The lines of a text file (zstd-compressed if `compressed`) in bounded memory: None for a line over
    MAX_LINE_BYTES; a compressed stream cut mid-frame raises ZstdError at its end."""
    return _bounded_lines(_zstd_chunks(raw) if compressed else iter(lambda: raw.read(1 << 20), b""))


def _text_records(path: str, skips: SkipCounter) -> Iterator[RawRecord]:
    try:
        with open(path, "rb") as raw:
            for number, line in enumerate(bounded_lines(raw, path.endswith(".zst"))):
                defect = None if line is not None else ("line_too_long", f"over {MAX_LINE_BYTES} bytes")
                yield RawRecord(path, str(number + 1), {"line": line}, defect)
    except (OSError, zstandard.ZstdError) as err:
        skips.add("truncated_shard", path, str(err))


class ShardCursor:
    """An endless, exactly resumable stream of one source's records for one (rank, worker).

    With at least as many shards as readers (ranks × workers), reader g reads shards g, g+G, ...; with fewer,
    every reader opens every shard and keeps record i of shard s (s: its place in the sorted list, the same in
    every reader) when (i + s + epoch) % G == g: the readers partition each epoch exactly, and the turn by epoch
    gives every reader records even when a source has fewer records than readers. Each epoch reshuffles the
    reader's shard order from (seed, source, reader, epoch).
    """

    def __init__(self, shards: list[str], kind: str, reader: int, n_readers: int, seed: str, skips: SkipCounter,
                 on_shard_end: Callable[[str, str, bool], None] | None = None, max_epochs: int = 0):
        self.kind = kind
        self.max_epochs = max_epochs
        """Passes over the shards before SourceExhausted is raised (0 = endless, as in training)."""
        self.on_shard_end = on_shard_end
        """Called with (shard path, split slot, read from its first record) when a shard is exhausted."""
        self.skips = skips
        self.seed = seed
        self.reader, self.n_readers = reader, n_readers
        self.split_records = len(shards) < n_readers
        self.shards = shards if self.split_records else shards[reader::n_readers]
        self._global_index = {path: i for i, path in enumerate(self.shards)}
        self.epoch = 0
        self.shard_pos = 0
        self.record_pos = 0
        self._records: Iterator[RawRecord] | None = None
        self._opened_at_start = False
        self.used_this_epoch = 0
        self.seen_this_epoch = 0
        """Records in this pass's shards so far, this reader's or not."""
        self.kept_this_epoch = 0
        """Records of this pass that fell to this reader (all of them unless split)."""

    @property
    def current_shard(self) -> str:
        return self._order()[self.shard_pos]

    def _order(self) -> list[str]:
        order = list(self.shards)
        random.Random(f"{self.seed}|{self.reader}|{self.epoch}").shuffle(order)
        return order

    def _open(self) -> Iterator[RawRecord]:
        path = self.current_shard
        self._opened_at_start = self.record_pos == 0
        reader = tar_records if self.kind == "speech" else _text_records
        try:
            open(path, "rb").close()
        except OSError as err:
            self.skips.add("missing_shard", path, str(err))
            return iter(())
        records = reader(path, self.skips)
        for _ in range(self.record_pos):  # resume: skip what was consumed, without decoding
            next(records, None)
        return records

    @property
    def split_slot(self) -> str:
        """Names the records this reader keeps of a shard in this epoch ("" unless split): readers and epochs with
        the same slot keep the same records."""
        if not self.split_records:
            return ""
        return f"-slot{(self.reader - self.epoch) % self.n_readers}of{self.n_readers}"

    def next_record(self) -> RawRecord:
        """The next record for this reader; raises NoUsableData after a whole epoch with records of its own but
        none used, or with no record at all (a source that is all bad must stop the run with its skip counts, not
        spin forever). A split pass with no record of its own just moves on: its turn comes in a later epoch."""
        while True:
            if self._records is None:
                self._records = self._open()
            record = next(self._records, None)
            if record is None:
                self._advance_shard()
                continue
            index = self.record_pos
            self.record_pos += 1
            self.seen_this_epoch += 1
            if self.split_records:
                turn = index + self._global_index[self.current_shard] + self.epoch
                if turn % self.n_readers != self.reader:
                    continue
            self.kept_this_epoch += 1
            return record

    def mark_used(self) -> None:
        """The last record made a document: this epoch is not all bad."""
        self.used_this_epoch += 1

    def _advance_shard(self) -> None:
        if self.on_shard_end is not None:
            self.on_shard_end(self.current_shard, self.split_slot, self._opened_at_start)
        self._records = None
        self.shard_pos += 1
        self.record_pos = 0
        if self.shard_pos >= len(self.shards):
            if self.seen_this_epoch == 0 or (self.kept_this_epoch and self.used_this_epoch == 0):
                empty = "" if self.seen_this_epoch else " (no record at all: empty or unreadable)"
                raise NoUsableData(
                    f"no usable record in a whole pass over {len(self.shards)} shard(s) "
                    f"(e.g. {self.shards[:1]}){empty}; skipped so far: {self.skips.as_dict()}")
            self.epoch += 1
            self.shard_pos = 0
            self.used_this_epoch = self.seen_this_epoch = self.kept_this_epoch = 0
            if self.max_epochs and self.epoch >= self.max_epochs:
                raise SourceExhausted(f"{self.max_epochs} pass(es) over {len(self.shards)} shard(s) done")

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "shard_pos": self.shard_pos, "record_pos": self.record_pos,
                "used_this_epoch": self.used_this_epoch, "seen_this_epoch": self.seen_this_epoch,
                "kept_this_epoch": self.kept_this_epoch, "shards": list(self.shards)}

    def load_state_dict(self, state: dict) -> None:
        """Restore the position; if this reader's shard list changed since the state was saved (files added,
        removed or renamed), say what changed and restart the epoch over the new list instead of reading
        positions of the old list in the new one."""
        self.epoch, self.shard_pos, self.record_pos = state["epoch"], state["shard_pos"], state["record_pos"]
        self.used_this_epoch = state["used_this_epoch"]
        # a state from before these counts: what it used, it saw and kept
        self.seen_this_epoch = state.get("seen_this_epoch", self.used_this_epoch)
        self.kept_this_epoch = state.get("kept_this_epoch", self.used_this_epoch)
        self._records = None
        saved = state.get("shards")
        if saved is not None and saved != list(self.shards):
            added = sorted(set(self.shards) - set(saved))
            removed = sorted(set(saved) - set(self.shards))
            LOG.warning("reader %d: the shard list changed since the checkpoint (%d added%s; %d removed%s%s): this "
                        "reader restarts epoch %d over the %d shards it has now, so what it read of this epoch is "
                        "read again", self.reader, len(added), _names(added), len(removed), _names(removed),
                        "" if added or removed else "; same files, other order", self.epoch, len(self.shards))
            self.restart_epoch(self.epoch)

    def restart_epoch(self, epoch: int) -> None:
        """Read `epoch` from its first shard and record."""
        self.epoch, self.shard_pos, self.record_pos = epoch, 0, 0
        self.used_this_epoch = self.seen_this_epoch = self.kept_this_epoch = 0
        self._records = None


def _names(paths: list[str]) -> str:
    return f": {', '.join(paths[:3])}{' ...' if len(paths) > 3 else ''}" if paths else ""


def decode_utf8(data: bytes | None, where: str) -> str:
    """UTF-8 text of a member or line; raises SkipSample('invalid_utf8')."""
    if data is None:
        raise SkipSample("unreadable_member", where)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SkipSample("invalid_utf8", where, str(err)) from None
