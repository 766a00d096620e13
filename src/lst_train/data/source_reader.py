"""Stage 1 of the stream: one data source's records, in this reader's shard order, as items to build documents
from. A text line yields its text; a speech record its Utterance, audio encoded `codec.batch_size` records at a
time (and cached per shard when data.cache_dir is set). A bad record raises SkipSample in its place.

State: the shard cursor and the speech items read and encoded but not yet used, so a resume re-encodes nothing
and yields exactly what the uninterrupted reader would have.
"""

import json
import os
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch

from lst_train.config import DataConfig, SourceConfig
from lst_train.data.shards import RawRecord, ShardCursor, decode_utf8
from lst_train.data.skips import SkipCounter, SkipSample, SourceExhausted
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.data.token_cache import TokenCache
from lst_train.data.utterances import DecodedRecord, Utterance, decode_record


@dataclass
class TextItem:
    """A text source's line: its record key and its text."""

    key: str
    text: str


def item_state(entry: tuple) -> tuple:
    """(identity, TextItem | Utterance | SkipSample) as plain data and tensors for the loader state."""
    identity, result = entry
    if isinstance(result, SkipSample):
        return identity, {"skip": [result.reason, result.where, result.detail]}
    if isinstance(result, TextItem):
        return identity, {"text_item": asdict(result)}
    payload = asdict(result)
    payload["frames"] = torch.from_numpy(payload["frames"])  # a tensor: loader state loads with weights_only
    return identity, payload


def item_from_state(entry: tuple) -> tuple:
    identity, payload = entry
    if "skip" in payload:
        return identity, SkipSample(*payload["skip"])
    if "text_item" in payload:
        return identity, TextItem(**payload["text_item"])
    return identity, Utterance(**(payload | {"frames": np.asarray(payload["frames"])}))


class SourceReader:
    def __init__(self, source: SourceConfig, index: int, paths: list[str], reader: int, n_readers: int,
                 data: DataConfig, tokenizer: SpeechTextTokenizer, skips: SkipCounter, max_epochs: int = 0):
        """`max_epochs`: passes before SourceExhausted (0 = endless: training); held-out reading makes one."""
        self.source = source
        self.codec_cfg = data.codec
        self.tokenizer = tokenizer
        self.cache = None
        if source.kind == "speech" and data.cache_dir:
            self.cache = TokenCache(data.cache_dir, data.codec, tokenizer.vocab.n_codebooks)
        self.cursor = ShardCursor(paths, source.kind, reader, n_readers, f"{data.seed}|{index}", skips,
                                  None if self.cache is None else self.cache.shard_done, max_epochs)
        self.prepared: deque = deque()
        self.exhausted = False

    @property
    def epoch(self) -> int:
        return self.cursor.epoch

    def codec(self):
        """The codec (Mimi or k-means units), built on first use in the worker process that needs it; None with
        data.codec.kind=units (pre-computed)."""
        return None if self.codec_cfg.kind == "units" else self.tokenizer.codec()

    def _identity(self, record: RawRecord) -> str:
        """Names the record in this epoch: seeds the document's and the patcher's RNGs."""
        return f"{os.path.basename(record.shard)}:{record.name}|{self.cursor.epoch}"

    def next_item(self) -> tuple[str, TextItem | Utterance]:
        """(identity, item) of the next record; raises SkipSample for a bad one, SourceExhausted after the last."""
        if self.source.kind == "text":
            return self._text_item()
        if not self.prepared and not self.exhausted:
            self._prepare_speech()
        if not self.prepared:
            raise SourceExhausted(self.source.path)
        identity, result = self.prepared.popleft()
        if isinstance(result, SkipSample):
            raise result
        return identity, result

    def _text_item(self) -> tuple[str, TextItem]:
        record = self.cursor.next_record()
        identity = self._identity(record)
        if record.defect:
            raise SkipSample(record.defect[0], record.key, record.defect[1])
        try:
            obj = json.loads(decode_utf8(record.files["line"], record.key))
        except (ValueError, RecursionError) as err:  # also ints over 4300 digits, nesting past the stack
            raise SkipSample("invalid_json", record.key, str(err)) from None
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise SkipSample("missing_text", record.key)
        self.cursor.mark_used()
        return identity, TextItem(record.key, text)

    def _prepare_speech(self) -> None:
        """Read `codec.batch_size` records, encode their audio in one batch, queue the results."""
        results: list[tuple[str, Utterance | DecodedRecord | SkipSample, RawRecord, str]] = []
        for _ in range(self.codec_cfg.batch_size):
            try:
                record = self.cursor.next_record()
            except SourceExhausted:
                self.exhausted = True
                break
            identity, slot = self._identity(record), self.cursor.split_slot
            try:
                cached = None if self.cache is None else self.cache.lookup(record.shard, slot, record.name)
                result = cached or decode_record(record, self.codec_cfg, self.codec, self.tokenizer.vocab)
                self.cursor.mark_used()  # now, before the cursor can pass an epoch boundary within this batch
            except SkipSample as skip:
                result = skip
            results.append((identity, result, record, slot))
        pending = [i for i, (_, result, _, _) in enumerate(results)
                   if isinstance(result, DecodedRecord) and result.audio is not None]
        codes = self.codec().encode_batch([results[i][1].audio for i in pending]) if pending else []
        for i, frames in zip(pending, codes):
            identity, decoded, record, slot = results[i]
            results[i] = (identity, decoded.utterance(frames, self.codec().frame_rate), record, slot)
        for identity, result, record, slot in results:
            if isinstance(result, DecodedRecord):
                result = result.utterance()
            if self.cache is not None:
                self.cache.store(record.shard, slot, record.name, result)
            self.prepared.append((identity, result))

    def state_dict(self) -> dict:
        return {"cursor": self.cursor.state_dict(), "prepared": [item_state(entry) for entry in self.prepared]}

    def load_state_dict(self, state: dict) -> None:
        self.cursor.load_state_dict(state["cursor"])
        self.prepared = deque(item_from_state(entry) for entry in state["prepared"])

    def restart_epoch(self, epoch: int) -> None:
        """Read epoch `epoch` from its beginning, with nothing prepared (another reader split's state)."""
        self.cursor.restart_epoch(epoch)
        self.prepared = deque()
