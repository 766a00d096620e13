"""The data stream of one reader (a rank's loader worker), as small stages in a chain:

    SourceReader (one per source)  records -> text items / utterances     state: shard cursor, encoded queue
    ShuffleBuffer (data.shuffle_buffer > 0)  items in a random order       state: the buffered items, draws
    DocumentBuilder                items -> documents                      stateless (RNG seeded by identity)
    TokenShareMixture              which source next                       state: tokens and documents per source
    PieceRenderer                  documents -> patched pieces             stateless (RNG seeded by identity)
    RowPacker                      pieces -> rows of `seq_units` units     state: the unfinished document
    BatchCollator                  rows -> Batch with exact FLOPs          state: batches made (the stream's clock)

The stream's state is the dict of the stages' states (plus the skip counts); restoring it yields exactly the
batches the uninterrupted stream would have. Randomness is derived from (seed, identity) strings, never from a
global RNG.
"""

from lst_train.config.data import source_shares
from lst_train.data.batch import Batch
from lst_train.data.collation import BatchCollator
from lst_train.data.documents import DocumentBuilder
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.mixture import TokenShareMixture
from lst_train.data.packing import RowPacker
from lst_train.data.pieces import Piece, PieceRenderer
from lst_train.data.shuffle_buffer import ShuffleBuffer, item_epoch
from lst_train.data.skips import LOG, NoUsableData, SkipCounter, SkipSample
from lst_train.data.source_reader import SourceReader
from lst_train.data.speech_text import SpeechTextTokenizer

STATE_FORMAT = 2
"""Version of the saved stream state: 2 = a dict of stage states (lst_train after 2026-11-28)."""


class ReaderStream:
    def __init__(self, spec: LoaderSpec, shards: list[list[str]], reader: int, n_readers: int,
                 worker: int, n_workers: int):
        data = spec.data
        self.reader, self.n_readers = reader, n_readers
        self.worker, self.n_workers = worker, n_workers
        self.grad_accum_steps = spec.grad_accum_steps
        self.batch_size = data.batch_size
        vocab = spec.vocab()
        self.skips = SkipCounter()
        self.tokenizer = SpeechTextTokenizer.from_config(data, vocab)
        self.sources = [SourceReader(source, i, paths, reader, n_readers, data, self.tokenizer, self.skips)
                        for i, (source, paths) in enumerate(zip(data.sources, shards))]
        if data.shuffle_buffer:
            self.sources = [ShuffleBuffer(source, data.shuffle_buffer, f"{data.seed}|{i}|{reader}")
                            for i, source in enumerate(self.sources)]
        self.source_configs = data.sources
        self.fitting_epoch: dict[int, int] = {}  # per source: the epoch of its latest document that fit a row
        self.documents = DocumentBuilder(self.tokenizer.text, vocab, data.interleave, data.seed)
        self.mixture = TokenShareMixture(source_shares(data.sources))
        self.renderer = PieceRenderer(vocab, spec.patcher(), data.seed)
        self.packer = RowPacker(data.seq_units, vocab, data.max_row_tokens)
        self.collator = BatchCollator(spec.model, vocab, data.pad_to_multiple, len(self.sources))

    @property
    def step(self) -> int:
        """The optimizer step the batch being built belongs to (workers are read round-robin)."""
        micro_batch = self.collator.batches * self.n_workers + self.worker
        return micro_batch // self.grad_accum_steps

    def next_piece(self) -> Piece:
        """The next usable document of the source furthest below its token share, rendered with its patches."""
        while True:
            index = self.mixture.next_source()
            try:
                identity, item = self.sources[index].next_item()
                document = self.documents.build(self.source_configs[index], identity, item)
                piece = self.renderer.render(identity, document, self.step)
                if piece.whole and not self.packer.fits_a_row(piece):
                    self._check_fitting(index)
                    raise SkipSample("too_long_for_row", document.key,
                                     f"{len(piece.tokens)} tokens: a task document is never split, and must fit "
                                     "data.seq_units tokens for every family; raise data.seq_units")
            except SkipSample as skip:
                self.skips.add(skip.reason, skip.where, skip.detail)
                continue
            self.fitting_epoch[index] = self.sources[index].epoch
            piece.source = index
            self.mixture.took(index, len(piece.tokens))
            return piece

    def _check_fitting(self, index: int) -> None:
        """Stop (NoUsableData) once a source has gone a whole pass without a document that fits a row: every one
        read, none packable, the mixture would ask it forever. Counted from the first miss seen by this process, so
        a resumed stream stops a pass later at most, never early."""
        epoch = self.sources[index].epoch
        if epoch >= self.fitting_epoch.setdefault(index, epoch) + 2:
            raise NoUsableData(f"no document of source {index} ({self.source_configs[index].path}) fits a row in a "
                               f"whole pass: raise data.seq_units; skipped so far: {self.skips.as_dict()}")

    def next_batch(self) -> Batch:
        step = self.step
        rows = [self.packer.next_row(self.next_piece) for _ in range(self.batch_size)]
        batch = self.collator.collate(rows)
        batch.loader = {"reader": self.reader, "step": step, "skipped": self.skips.as_dict(),
                        "documents": list(self.mixture.documents), "epochs": [s.epoch for s in self.sources]}
        return batch

    def state_dict(self) -> dict:
        return {"format": STATE_FORMAT, "reader": self.reader, "n_readers": self.n_readers,
                "skipped": self.skips.as_dict(),
                "sources": [source.state_dict() for source in self.sources], "mixture": self.mixture.state_dict(),
                "packer": self.packer.state_dict(), "collator": self.collator.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"this loader state has format {state.get('format', 1)}, this lst_train reads format "
                             f"{STATE_FORMAT} (the stream became stages on 2026-11-28): resume it with the lst_train "
                             "version that wrote it, or start the run again")
        if len(state["sources"]) != len(self.sources):
            raise ValueError(f"loader state of {len(state['sources'])} data sources given to a stream of "
                             f"{len(self.sources)}: resume with the recipe's data.sources unchanged")
        self.skips.counts.clear()
        self.skips.counts.update(state["skipped"])
        self.mixture.load_state_dict(state["mixture"])
        self.collator.load_state_dict(state["collator"])
        if (state["reader"], state.get("n_readers", self.n_readers)) != (self.reader, self.n_readers):
            self._regroup(state)
            return
        for source, source_state in zip(self.sources, state["sources"]):
            buffered = "buffer" in source_state
            if buffered and not isinstance(source, ShuffleBuffer):
                if source_state["buffer"]:
                    LOG.warning("reader %d: data.shuffle_buffer is now 0: the %d documents the checkpoint's shuffle "
                                "buffer held are not read", self.reader, len(source_state["buffer"]))
                source_state = source_state["reader"]
            elif isinstance(source, ShuffleBuffer) and not buffered:  # turned on: the buffer starts empty
                source_state = {"reader": source_state, "buffer": [], "draws": 0, "exhausted": False}
            source.load_state_dict(source_state)
        self.packer.load_state_dict(state["packer"])

    def _regroup(self, state: dict) -> None:
        """The state of another reader split (the number of ranks changed): its shard positions mean nothing
        here, so every source restarts the epoch it was in, with no unfinished document, encoded queue or shuffle
        buffer; what was read of those epochs is read again, nothing of them is skipped (documents of the epoch
        before still in a shuffle buffer are dropped, and logged); the mixture and the clock (curriculum,
        step) continue. Only the reader with the old reader's id keeps its skip counts, so that the sum over readers
        counts no skip twice (with fewer ranks, the counts of readers that are gone are not carried on)."""
        readers = [source_state.get("reader", source_state) for source_state in state["sources"]]
        epochs = [reader_state["cursor"]["epoch"] for reader_state in readers]
        for source, epoch in zip(self.sources, epochs):
            source.restart_epoch(epoch)
        dropped = sum(item_epoch(identity) < epoch for source_state, epoch in zip(state["sources"], epochs)
                      for identity, _ in source_state.get("buffer", []))
        if dropped:  # those of the current epoch are read again; these were read in the epoch before
            LOG.warning("reader %d: %d documents of an earlier epoch held in the old reader's shuffle buffers are not "
                        "read (the number of ranks changed)", self.reader, dropped)
        if state["reader"] != self.reader:
            self.skips.counts.clear()
        LOG.warning("reader %d of %d continues from the state of reader %d of %s (the number of ranks changed): "
                    "each source restarts its epoch (%s) from the beginning, so what was read of it is read again; "
                    "the clock continues at batch %d", self.reader, self.n_readers, state["reader"],
                    state.get("n_readers", "?"), ", ".join(map(str, epochs)), self.collator.batches)
