"""The data stream of one reader (a rank's loader worker): records -> documents -> pieces -> packed batches.

The mixture weights are shares of training tokens, not of documents (a KJV chapter is hundreds of times longer
than a 5-second utterance): the next document comes from the source furthest below its share of the tokens
rendered so far, so the realised shares track the weights within about one document at every point of the stream.

Its state is a handful of counters (tokens per source, batches), each source's shard cursor, the speech
utterances prepared but not yet used, the packer's unfinished document and the skip counts: restoring it yields
exactly the batches the uninterrupted stream would have. Randomness is derived from (seed, identity) strings,
never from a global RNG.
"""

import json
import os
import random
from collections import deque
from dataclasses import asdict

from lst_train.config import Config
from lst_train.config.data import source_shares
from lst_train.data.batch import Batch
from lst_train.data.documents import Document, interleaved_document, speech_document, text_document
from lst_train.data.packing import Piece, RowPacker, collate_rows, render
from lst_train.data.patchers import Patcher
from lst_train.data.shards import RawRecord, ShardCursor, decode_utf8
from lst_train.data.skips import SkipCounter, SkipSample
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.data.token_cache import TokenCache
from lst_train.data.utterances import DecodedRecord, Utterance, decode_record
from lst_train.flops import batch_flops
from lst_train.vocab import Vocab


def _prepared_state(entry: tuple) -> tuple:
    identity, result = entry
    payload = {"skip": [result.reason, result.where, result.detail]} if isinstance(result, SkipSample) \
        else asdict(result)
    return identity, payload


def _prepared_from_state(entry: tuple) -> tuple:
    identity, payload = entry
    return identity, SkipSample(*payload["skip"]) if "skip" in payload else Utterance(**payload)


class ReaderStream:
    def __init__(self, cfg: Config, shards: list[list[str]], reader: int, n_readers: int,
                 worker: int, n_workers: int):
        data = cfg.data
        self.cfg = cfg
        self.vocab = Vocab.from_config(cfg.model.vocab)
        self.reader = reader
        self.worker, self.n_workers = worker, n_workers
        self.skips = SkipCounter()
        self.caches = [self._token_cache(source.kind, len(paths), n_readers) for source, paths in
                       zip(data.sources, shards)]
        self.cursors = [ShardCursor(paths, source.kind, reader, n_readers, f"{data.seed}|{i}", self.skips,
                                    None if cache is None else cache.shard_done)
                        for i, (source, paths, cache) in enumerate(zip(data.sources, shards, self.caches))]
        self.prepared: list[deque] = [deque() for _ in data.sources]
        self.shares = source_shares(data.sources)
        self.tokenizer = SpeechTextTokenizer.from_config(data, self.vocab)
        self.patcher = Patcher(cfg.patching, cfg.training.steps) if cfg.model.arch == "lst" else None
        self.packer = RowPacker(data.seq_units, self.vocab, data.max_row_tokens)
        self.batches = 0
        self.documents = [0] * len(self.cursors)
        self.source_tokens = [0] * len(self.cursors)  # tokens rendered per source: what the mixture balances

    def codec(self):
        """Mimi, built on first use (in the worker process that needs it); None with data.codec.kind=units."""
        return self.tokenizer.codec() if self.cfg.data.codec.kind == "mimi" else None

    def _token_cache(self, kind: str, n_shards: int, n_readers: int) -> TokenCache | None:
        if kind != "speech" or not self.cfg.data.cache_dir:
            return None
        split = f"-reader{self.reader}of{n_readers}" if n_shards < n_readers else ""
        return TokenCache(self.cfg.data.cache_dir, self.cfg.data.codec, self.vocab.n_codebooks, split)

    @property
    def step(self) -> int:
        """The optimizer step the batch being built belongs to (workers are read round-robin)."""
        micro_batch = self.batches * self.n_workers + self.worker
        return micro_batch // self.cfg.training.grad_accum_steps

    def _prepare_speech(self, index: int) -> None:
        """Read `codec.batch_size` records of a speech source, encode their audio in one batch, queue the results."""
        cursor, cache = self.cursors[index], self.caches[index]
        results: list[tuple[str, Utterance | DecodedRecord | SkipSample]] = []
        for _ in range(self.cfg.data.codec.batch_size):
            record = cursor.next_record()
            identity = f"{os.path.basename(record.shard)}:{record.name}|{cursor.epoch}"
            try:
                cached = None if cache is None else cache.lookup(record.shard, record.name)
                result = cached or decode_record(record, self.cfg.data.codec, self.codec, self.vocab)
                cursor.mark_used()  # now, before the cursor can pass an epoch boundary within this batch
            except SkipSample as skip:
                result = skip
            results.append((identity, result, record))
        pending = [i for i, (_, result, _) in enumerate(results)
                   if isinstance(result, DecodedRecord) and result.audio is not None]
        codes = self.codec().encode_batch([results[i][1].audio for i in pending]) if pending else []
        for i, frames in zip(pending, codes):
            identity, decoded, record = results[i]
            results[i] = (identity, decoded.utterance(frames, self.codec().frame_rate), record)
        for identity, result, record in results:
            if isinstance(result, DecodedRecord):
                result = result.utterance()
            if cache is not None:
                cache.store(record.shard, record.name, result)
            self.prepared[index].append((identity, result))

    def _text_document(self, index: int) -> tuple[str, Document]:
        cursor = self.cursors[index]
        record = cursor.next_record()
        identity = f"{os.path.basename(record.shard)}:{record.name}|{cursor.epoch}"
        try:
            obj = json.loads(decode_utf8(record.files["line"], record.key))
        except json.JSONDecodeError as err:
            raise SkipSample("invalid_json", record.key, str(err)) from None
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise SkipSample("missing_text", record.key)
        cursor.mark_used()
        return identity, text_document(record.key, text, self.tokenizer.text)

    def _document(self, index: int) -> tuple[str, Document]:
        """The next document of a source and its identity (seeds its RNG); raises SkipSample for a bad record."""
        source = self.cfg.data.sources[index]
        if source.kind == "text":
            return self._text_document(index)
        if not self.prepared[index]:
            self._prepare_speech(index)
        identity, result = self.prepared[index].popleft()
        if isinstance(result, SkipSample):
            raise result
        if source.sequence_kind == "speech":
            return identity, speech_document(result, self.vocab)
        rng = random.Random(f"{self.cfg.data.seed}|doc|{identity}")
        return identity, interleaved_document(result, self.tokenizer.text, self.vocab, self.cfg.data.interleave, rng)

    def next_source(self) -> int:
        """The source furthest below its token share (ties: the first listed)."""
        total = sum(self.source_tokens)
        deficits = [share * total - tokens for share, tokens in zip(self.shares, self.source_tokens)]
        return max(range(len(deficits)), key=deficits.__getitem__)

    def next_piece(self) -> Piece:
        """Take the next usable document of the source furthest below its token share, render it with its patches."""
        while True:
            index = self.next_source()
            try:
                identity, document = self._document(index)
            except SkipSample as skip:
                self.skips.add(skip.reason, skip.where, skip.detail)
                continue
            self.documents[index] += 1
            patch_rng = random.Random(f"{self.cfg.data.seed}|patch|{identity}")
            aligned = self.patcher is not None and patch_rng.random() < self.patcher.aligned_probability(self.step)
            piece = render(document, self.vocab, self.patcher, aligned)
            piece.source = index
            self.source_tokens[index] += len(piece.tokens)
            return piece

    def next_batch(self) -> Batch:
        rows = [self.packer.next_row(self.next_piece) for _ in range(self.cfg.data.batch_size)]
        batch = collate_rows(rows, self.vocab, self.cfg.data.pad_to_multiple, len(self.cursors))
        # Exact training FLOPs of the batch, counted here (in the loader worker) rather than in the training step.
        batch.flops = batch_flops(self.cfg.model, batch.tokens, batch.patch_lengths,
                                     batch.closed_early).training
        batch.loader = {"reader": self.reader, "step": self.step, "skipped": self.skips.as_dict(),
                           "documents": list(self.documents), "epochs": [c.epoch for c in self.cursors]}
        self.batches += 1
        return batch

    def state_dict(self) -> dict:
        return {"reader": self.reader, "source_tokens": list(self.source_tokens), "batches": self.batches,
                "documents": list(self.documents), "skipped": self.skips.as_dict(),
                "cursors": [c.state_dict() for c in self.cursors], "packer": self.packer.state_dict(),
                "prepared": [[_prepared_state(entry) for entry in queue] for queue in self.prepared]}

    def load_state_dict(self, state: dict) -> None:
        if state["reader"] != self.reader:
            raise ValueError(f"loader state of reader {state['reader']} given to reader {self.reader}: "
                             "resume with the same number of ranks and data.num_workers")
        if "source_tokens" not in state:
            raise ValueError("this loader state was saved before mixture weights became token shares (it has no "
                             "source_tokens): resume it with the lst_train version that wrote it, or start the run "
                             "again")
        self.source_tokens, self.batches = list(state["source_tokens"]), state["batches"]
        self.documents = list(state["documents"])
        self.skips.counts.clear()
        self.skips.counts.update(state["skipped"])
        for cursor, cursor_state in zip(self.cursors, state["cursors"]):
            cursor.load_state_dict(cursor_state)
        self.packer.load_state_dict(state["packer"])
        self.prepared = [deque(_prepared_from_state(entry) for entry in queue) for queue in state["prepared"]]
