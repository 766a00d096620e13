"""The work of a pack or align run, fixed before any audio is read: which samples go to which output shard.

The plan depends only on the inputs and options, so a re-run recomputes the same plan and finishes only the
shards whose completion record is missing; a plan that differs from the one on disk (inputs or options changed)
is refused with what changed, instead of mixing two corpora in one directory.
"""

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile

from lst_train.data.ingest.inputs import KEPT_AUDIO, InputUtterance, discover
from lst_train.data.ingest.sample_builder import PackOptions
from lst_train.data.ingest.shard_writer import write_json
from lst_train.data.skips import SkipCounter

PLAN_FORMAT = 1
STATE_DIR = ".pack"
_SAMPLE_OVERHEAD = 2048  # tar headers and the KEY.json of one sample


class PackError(RuntimeError):
    """A pack / align run that cannot start: one line naming the problem and the fix."""


@dataclass
class ShardJob:
    """One output shard and what goes into it."""

    name: str
    """Output file name, e.g. shard-000012.tar."""
    plan_hash: str
    """Fingerprint of the shard's inputs: its completion record must carry the same."""
    inputs: list[InputUtterance] | None = None
    """pack: the utterances, in order."""
    source_shard: str | None = None
    """align: the shard whose samples are re-written."""


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: str) -> str:
    with open(path, "rb") as data:
        return hashlib.sha256(data.read()).hexdigest()


def estimated_bytes(utterance: InputUtterance, skips: SkipCounter) -> int | None:
    """Bytes the sample will take in a shard: the file's size, or 16-bit PCM for formats re-encoded as FLAC (an
    upper bound); None (counted) if the file cannot be read."""
    try:
        if utterance.audio.rsplit(".", 1)[-1].lower() in KEPT_AUDIO:
            return os.path.getsize(utterance.audio) + _SAMPLE_OVERHEAD
        info = soundfile.info(utterance.audio)
        return info.frames * info.channels * 2 + _SAMPLE_OVERHEAD
    except OSError as err:
        skips.add("missing_audio", utterance.audio, str(err))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        skips.add("unreadable_audio", utterance.audio, str(err).splitlines()[0])
    return None


def plan_pack(sources: list[str], shard_bytes: int, shuffle_seed: int | None,
              skips: SkipCounter) -> list[ShardJob]:
    """Utterances of all sources (sorted; shuffled by the seed if given) cut into shards of <= shard_bytes (a
    sample larger than that gets a shard to itself). A shard's fingerprint covers its utterances and their file
    sizes, so a re-run over files that changed is refused rather than mixed."""
    inputs = discover(sources, skips)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(inputs)
    groups: list[list[tuple[InputUtterance, int]]] = []
    size = 0
    for utterance in inputs:
        n = estimated_bytes(utterance, skips)
        if n is None:
            continue
        if not groups or (size + n > shard_bytes and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append((utterance, n))
        size += n
    return [ShardJob(f"shard-{i:06d}.tar", _hash([asdict(u) | {"bytes": n} for u, n in group]),
                     inputs=[u for u, _ in group]) for i, group in enumerate(groups)]


def plan_align(shards: list[str]) -> list[ShardJob]:
    """One output shard per input shard, same file name; fingerprinted by path, size and modification time."""
    names = [Path(s).name for s in shards]
    if len(set(names)) != len(names):
        raise PackError("data align: two input shards share a file name; align each directory on its own")
    jobs = []
    for shard in shards:
        stat = os.stat(shard)
        jobs.append(ShardJob(Path(shard).name, _hash([os.path.abspath(shard), stat.st_size, stat.st_mtime_ns]),
                             source_shard=shard))
    return jobs


def plan_record(kind: str, sources: list[str], options: PackOptions, extra: dict, jobs: list[ShardJob],
                planning_skips: dict[str, int]) -> dict:
    return {"format": PLAN_FORMAT, "kind": kind, "sources": sources, "options": asdict(options) | extra,
            "shards": {job.name: job.plan_hash for job in jobs}, "planning_skipped": planning_skips}


def _difference(old: dict, new: dict) -> str:
    for key in ("kind", "sources", "options"):
        if old.get(key) != new.get(key):
            return f"{key} were {old.get(key)}, now {new.get(key)}"
    old_shards, new_shards = old.get("shards", {}), new.get("shards", {})
    if len(old_shards) != len(new_shards):
        return f"the inputs make {len(new_shards)} shards, the directory was planned with {len(old_shards)}"
    changed = [name for name in new_shards if old_shards.get(name) != new_shards[name]]
    return f"the inputs of {len(changed)} shard(s) changed, first {changed[0]}" if changed else "planning skips"


def reconcile_plan(out: Path, plan: dict) -> None:
    """First run: record the plan. Re-run: it must be the same plan; refuse a directory made by something else."""
    record = out / STATE_DIR / "plan.json"
    if record.is_file():
        old = json.loads(record.read_text())
        if old != plan:
            raise PackError(f"{out} was packed from other inputs or options ({_difference(old, plan)}): "
                            f"use a new --out, or delete {out} to start over")
        return
    if out.exists() and any(out.iterdir()):
        raise PackError(f"{out} is not empty and has no {STATE_DIR}/plan.json: give a new or empty --out")
    (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    write_json(record, plan)
