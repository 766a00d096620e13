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


def check_tools(options: PackOptions) -> dict:
    """Load the aligner and the units file once before any work, so a missing package, a bad --dict or --units
    stops the run at start-up; returns what the plan records about them (file digests: other pronunciations or
    centroids, other output)."""
    recorded = {}
    if options.align != "none":
        from lst_train.data.ingest.aligner import PocketsphinxAligner

        try:
            PocketsphinxAligner(options.dictionary)
        except (OSError, ValueError) as err:
            raise PackError(f"--dict {options.dictionary}: {err}") from None
        if options.dictionary:
            recorded["dictionary_sha256"] = file_digest(options.dictionary)
    if options.units:
        from lst_train.data.speech_units import KMeansUnitCodec

        try:
            KMeansUnitCodec(options.units)
        except (OSError, ValueError) as err:
            raise PackError(f"--units {options.units}: {err}; make one with `lst-train tokenizer train-units`") \
                from None
        recorded["units_sha256"] = file_digest(options.units)
    return recorded


def pack_corpus(sources: list[str], out: Path, options: PackOptions, shard_bytes: int,
                shuffle_seed: int | None = None, workers: int = 1) -> dict:
    """Pack LibriSpeech trees, manifests and audio folders into shards under `out`; returns the index."""
    if options.realign:
        raise PackError("--realign is for `data align` (pack keeps the timings a source gives)")
    tools = check_tools(options)
    skips = SkipCounter()
    jobs = plan_pack(sources, shard_bytes, shuffle_seed, skips)
    if not jobs:
        raise PackError(f"no utterance found in {' '.join(sources)} (skipped: {skips.as_dict() or 'nothing'})")
    plan = plan_record("pack", sources, options, {"shard_bytes": shard_bytes, "shuffle_seed": shuffle_seed} | tools, jobs,
                       skips.as_dict())
    reconcile_plan(out, plan)
    total = sum(len(job.inputs) for job in jobs)
    records = run_jobs(jobs, out, options, workers, total, "packing")
    return write_index(out, plan, records)


def align_shards(patterns: list[str], out: Path, options: PackOptions, workers: int = 1) -> dict:
    """Re-write existing shards into `out` with word timings from the aligner; returns the index."""
    if options.align == "none" and not options.units:
        raise PackError("data align needs --align pocketsphinx (or --units FILE to add units only)")
    shards = sorted({path for pattern in patterns for path in list_shards(pattern)})
    if not shards:
        raise PackError(f"no shard matches {' '.join(patterns)}")
    if any(Path(s).resolve().parent == out.resolve() for s in shards):
        raise PackError(f"--out {out} holds the input shards: write the aligned shards to another directory")
    tools = check_tools(options)
    jobs = plan_align(shards)
    plan = plan_record("align", shards, options, tools, jobs, {})
    reconcile_plan(out, plan)
    return write_index(out, plan, run_jobs(jobs, out, options, workers, None, "aligning"))


def packed_index(pattern: str) -> dict | None:
    """The index.json next to a source's shards (`DIR/*.tar` -> DIR/index.json), if they were packed by us."""
    try:
        return json.loads((Path(os.path.dirname(pattern) or ".") / "index.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
