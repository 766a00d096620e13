"""`data pack` and `data align` end to end: plan, check the plan against the directory, run, write the index."""

import json
import logging
import os
from pathlib import Path

from lst_train.data.ingest.plan import PackError, file_digest, plan_align, plan_pack, plan_record, reconcile_plan
from lst_train.data.ingest.runner import run_jobs, write_index
from lst_train.data.ingest.sample_builder import PackOptions
from lst_train.data.shards import list_shards
from lst_train.data.skips import SkipCounter

LOG = logging.getLogger("lst_train.data")


def check_aligner(options: PackOptions) -> dict:
    """Load the aligner once before any work, so a missing package or a bad --dict stops the run at start-up;
    returns what the plan records about it (the dictionary's digest: other pronunciations, other timings)."""
    if options.align == "none":
        return {}
    from lst_train.data.ingest.aligner import PocketsphinxAligner

    try:
        PocketsphinxAligner(options.dictionary)
    except (OSError, ValueError) as err:
        raise PackError(f"--dict {options.dictionary}: {err}") from None
    return {"dictionary_sha256": file_digest(options.dictionary)} if options.dictionary else {}


def pack_corpus(sources: list[str], out: Path, options: PackOptions, shard_bytes: int,
                shuffle_seed: int | None = None, workers: int = 1) -> dict:
    """Pack LibriSpeech trees, manifests and audio folders into shards under `out`; returns the index."""
    if options.realign:
        raise PackError("--realign is for `data align` (pack keeps the timings a source gives)")
    aligner = check_aligner(options)
    skips = SkipCounter()
    jobs = plan_pack(sources, shard_bytes, shuffle_seed, skips)
    if not jobs:
        raise PackError(f"no utterance found in {' '.join(sources)} (skipped: {skips.as_dict() or 'nothing'})")
    plan = plan_record("pack", sources, options, {"shard_bytes": shard_bytes, "shuffle_seed": shuffle_seed} | aligner, jobs,
                       skips.as_dict())
    reconcile_plan(out, plan)
    total = sum(len(job.inputs) for job in jobs)
    records = run_jobs(jobs, out, options, workers, total, "packing")
    return write_index(out, plan, records)


def align_shards(patterns: list[str], out: Path, options: PackOptions, workers: int = 1) -> dict:
    """Re-write existing shards into `out` with word timings from the aligner; returns the index."""
    if options.align == "none":
        raise PackError("data align needs an aligner: --align pocketsphinx")
    shards = sorted({path for pattern in patterns for path in list_shards(pattern)})
    if not shards:
        raise PackError(f"no shard matches {' '.join(patterns)}")
    if any(Path(s).resolve().parent == out.resolve() for s in shards):
        raise PackError(f"--out {out} holds the input shards: write the aligned shards to another directory")
    aligner = check_aligner(options)
    jobs = plan_align(shards)
    plan = plan_record("align", shards, options, aligner, jobs, {})
    reconcile_plan(out, plan)
    return write_index(out, plan, run_jobs(jobs, out, options, workers, None, "aligning"))


def packed_index(pattern: str) -> dict | None:
    """The index.json next to a source's shards (`DIR/*.tar` -> DIR/index.json), if they were packed by us."""
    try:
        return json.loads((Path(os.path.dirname(pattern) or ".") / "index.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
