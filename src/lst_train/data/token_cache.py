"""On-disk cache of encoded speech, so that later epochs need not decode audio and run Mimi again.

One file per (codec config, shard content, split slot): the utterances of every record the reader read in that
shard, or the reason it was skipped (a bad record stays counted in every epoch). A shard's file is written, atomically,
only once the reader has read the whole shard from its first record; until then the shard is encoded as usual.
A file holds only tensors, strings and numbers and is read with `weights_only=True`: a planted or corrupted file is
a cache miss, never code that runs.
"""

import hashlib
import json
import os
import pickle
from dataclasses import asdict

import numpy as np
import torch

from lst_train.config.data import CodecConfig
from lst_train.data.skips import SkipSample
from lst_train.data.utterances import Utterance

PROBE_BYTES = 1 << 16


def codec_key(codec: CodecConfig, n_codebooks: int) -> str:
    """Everything that changes the codes: the codec, its weights or seed (a units file by its contents: retrained
    in place, it makes other codes), and the codebooks kept."""
    weights = os.path.abspath(codec.weights) if codec.weights else ""
    if codec.kind == "kmeans" and os.path.isfile(weights):
        with open(weights, "rb") as f:
            weights = hashlib.sha1(f.read()).hexdigest()
    # format 3: Mimi pads each clip to whole frames before encoding (its last frame's codes changed)
    identity = {"format": 3, "kind": codec.kind, "weights": weights,
                "seed": codec.seed, "n_codebooks": n_codebooks, "max_seconds": codec.max_seconds,
                "silence_threshold": codec.silence_threshold}
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def shard_key(path: str) -> str:
    """The shard's content identity: its size and its first and last 64 KiB (cheap on multi-GB shards)."""
    digest = hashlib.sha1()
    size = os.path.getsize(path)
    digest.update(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(PROBE_BYTES))
        f.seek(max(0, size - PROBE_BYTES))
        digest.update(f.read(PROBE_BYTES))
    return digest.hexdigest()[:20]


class TokenCache:
    def __init__(self, root: str, codec: CodecConfig, n_codebooks: int):
        self.directory = os.path.join(root, codec_key(codec, n_codebooks))
        self._shard: tuple[str, str] | None = None
        self._loaded: dict | None = None
        self._collected: dict = {}

    def _path(self, shard: str, slot: str) -> str:
        return os.path.join(self.directory, f"{shard_key(shard)}{slot}.pt")

    def _switch(self, shard: str, slot: str) -> None:
        """`slot`: which records of the shard the reader keeps (ShardCursor.split_slot; "" for all of them)."""
        if (shard, slot) == self._shard:
            return
        self._shard, self._collected = (shard, slot), {}
        try:
            self._loaded = torch.load(self._path(shard, slot), weights_only=True)
        except (OSError, EOFError, RuntimeError, pickle.UnpicklingError):
            self._loaded = None

    def lookup(self, shard: str, slot: str, name: str) -> Utterance | None:
        """The cached utterance of a record, None if not cached; raises the cached SkipSample of a bad one."""
        self._switch(shard, slot)
        entry = None if self._loaded is None else self._loaded.get(name)
        if entry is None:
            return None
        if "skip" in entry:
            raise SkipSample(entry["skip"], f"{shard}:{name}", entry["detail"] + " (cached)")
        # stored as int16 when they fit: back to the int64 of Utterance.frames, or ids past 32767 would wrap
        return Utterance(**{**entry, "frames": entry["frames"].numpy().astype(np.int64)})

    def store(self, shard: str, slot: str, name: str, result: Utterance | SkipSample) -> None:
        self._switch(shard, slot)
        if isinstance(result, SkipSample):
            self._collected[name] = {"skip": result.reason, "detail": result.detail}
        else:
            entry = asdict(result)
            entry["frames"] = torch.from_numpy(
                result.frames.astype(np.int16 if result.frames.max(initial=0) < 32768 else np.int64))
            self._collected[name] = entry

    def shard_done(self, shard: str, slot: str, read_from_start: bool) -> None:
        """Write the shard's file if it was read whole and is not cached yet."""
        if (shard, slot) == self._shard and read_from_start and self._loaded is None and self._collected:
            os.makedirs(self.directory, exist_ok=True)
            path = self._path(shard, slot)
            torch.save(self._collected, f"{path}.tmp{os.getpid()}")
            os.replace(f"{path}.tmp{os.getpid()}", path)
        if (shard, slot) == self._shard:
            self._shard, self._loaded, self._collected = None, None, {}
