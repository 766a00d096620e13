"""Shard files written so that a reader never sees half of one: a deterministic tar built under a temporary name,
flushed to disk, then renamed into place."""

import io
import json
import os
import tarfile
from pathlib import Path


def _publish(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: an orphan of a killed run cannot clash
    with open(tmp, "wb") as out:
        write(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> int:
    """Write a tar of (name, bytes) with fixed metadata (same members -> same bytes); returns its size. PAX: a name
    over ustar's 100 bytes (a long sample key) gets an extended header (fixed too); shorter ones are plain ustar."""
    def write(out) -> None:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    _publish(path, write)
    return path.stat().st_size


def write_json(path: Path, obj: dict) -> None:
    """Atomically write a JSON file (sorted keys, indented: diffable, deterministic)."""
    _publish(path, lambda out: out.write((json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()))
