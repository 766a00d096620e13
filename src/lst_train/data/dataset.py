"""The training data loader: a stateful IterableDataset of packed batches under torchdata's StatefulDataLoader.

Each (rank, worker) is one reader with its own share of the shards. `loader.state_dict()` holds every reader's
state; `load_state_dict` on a new loader (same ranks and workers) makes it yield exactly the batches the old one
would have yielded next.
"""

import os
import warnings

import torch
from torch.utils.data import IterableDataset, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader

from lst_train.config import ConfigError
from lst_train.data.entropy_table import check_entropy_table
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.shards import list_shards
from lst_train.data.speech_codec import check_mimi
from lst_train.data.speech_units import check_units_file
from lst_train.data.stream import ReaderStream
from lst_train.data.text_tokenizer import BYTE_LEVEL, TRAIN_COMMAND, TextTokenizer
from lst_train.data.token_cache import codec_key

# torchdata 0.11 calls torch.set_vital, deprecated in torch 2.13, on every loader it builds: harmless, and it
# would print twice per rank in every run's console.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)


def resolve_shards(spec: LoaderSpec) -> list[list[str]]:
    """Shard lists per source; a source whose glob matches nothing (or a missing tokenizer or codec weights) is a
    start-up error naming the key."""
    data = spec.data
    if not data.sources:
        raise ConfigError(f"{spec.sources_key}: empty; list at least one {{kind, path, weight}}")
    shards = []
    for i, source in enumerate(data.sources):
        paths = list_shards(source.path)
        if not paths:
            raise ConfigError(f"{spec.sources_key}[{i}].path: no file matches {source.path!r} (cwd {os.getcwd()})")
        shards.append(paths)
    weights = data.codec.weights
    if weights and data.codec.kind == "mimi" and not os.path.isdir(weights):
        raise ConfigError(f"data.codec.weights: no directory {weights!r}; point it at local Mimi weights "
                          "(transformers format), or leave it empty for random weights (tests only)")
    if data.codec.kind == "kmeans":
        check_units_file(weights, spec.model.vocab)
    if data.codec.kind == "mimi" and any(source.kind == "speech" for source in data.sources):
        check_mimi(data.codec, spec.model.vocab)
    if spec.model.arch == "lst" and spec.patching.strategy == "entropy":
        check_entropy_table(spec.patching.entropy_table, codec_key(data.codec, spec.model.vocab.n_codebooks),
                            spec.model.vocab.speech_codebook_size)
    if data.tokenizer != BYTE_LEVEL and not os.path.isfile(data.tokenizer):
        raise ConfigError(f"data.tokenizer: no file {data.tokenizer!r}; make one with {TRAIN_COMMAND}")
    n_text = TextTokenizer.from_file(data.tokenizer).n_vocab
    if n_text > spec.model.vocab.text_size:
        raise ConfigError(f"model.vocab.text_size: {spec.model.vocab.text_size} is smaller than the "
                          f"{n_text} ids of data.tokenizer {data.tokenizer!r}; set model.vocab.text_size={n_text}")
    return shards


class PackedSpeechTextDataset(IterableDataset):
    """Endless packed batches for one rank; sharded across this rank's loader workers."""

    def __init__(self, spec: LoaderSpec, rank: int = 0, world_size: int = 1):
        self.spec = spec
        self.rank, self.world_size = rank, world_size
        self.shards = resolve_shards(spec)
        self.stream: ReaderStream | None = None
        self.restored: dict | None = None

    def _make_stream(self) -> ReaderStream:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reader, n_readers = self.rank * n_workers + worker, self.world_size * n_workers
        stream = ReaderStream(self.spec, self.shards, reader, n_readers, worker, n_workers)
        if self.restored is not None:
            stream.load_state_dict(self.restored)
        return stream

    def __iter__(self):
        self.stream = self._make_stream()
        while True:
            yield self.stream.next_batch()

    def state_dict(self) -> dict:
        if self.stream is None:
            return dict(self.restored or {})
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.restored = state or None
        self.stream = None


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # several Mimi encoders per rank must not oversubscribe the cores


def build_dataloader(spec: LoaderSpec, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> StatefulDataLoader:
    """The loader of one rank: yields Batch objects (lst_train.data.batch) forever; `pin_memory` for non-blocking
    copies to a GPU."""
    dataset = PackedSpeechTextDataset(spec, rank, world_size)
    workers = spec.data.num_workers
    return StatefulDataLoader(dataset, batch_size=None, num_workers=workers,
                              worker_init_fn=_worker_init if workers else None,
                              prefetch_factor=2 if workers else None, persistent_workers=False, pin_memory=pin_memory)


__all__ = ["PackedSpeechTextDataset", "build_dataloader", "resolve_shards"]
