"""Run a plan: shards in parallel worker processes, a progress bar, per-shard completion records, the index.

A shard is done when its completion record (`.pack/NAME.json`: counts, skips, the plan hash) exists; it is
written after the shard file is in place, so a run killed at any instant leaves whole shards and no record for a
partial one. The index (`index.json`) is rebuilt from the records when every shard is done.
"""

import json
import logging
import multiprocessing
import os
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from queue import Empty
from typing import Iterator

from tqdm import tqdm

from lst_train.data.audio import AUDIO_EXTENSIONS
from lst_train.data.ingest.plan import STATE_DIR, ShardJob
from lst_train.data.ingest.sample_builder import BuiltSample, PackOptions, SampleInput, build_sample
from lst_train.data.ingest.shard_writer import write_json, write_tar
from lst_train.data.shards import tar_records
from lst_train.data.skips import SkipCounter, SkipSample, merge_skip_counts
from lst_train.data.utterances import load_json

LOG = logging.getLogger("lst_train.data")
INDEX_FORMAT = 1
EXAMPLES_PER_REASON = 5
_worker: dict = {}  # per process: the aligner (loaded once) and where to report each sample


def _pack_inputs(job: ShardJob) -> Iterator[SampleInput]:
    for utterance in job.inputs:
        meta = {"text": utterance.text, "source": utterance.audio}
        if utterance.words is not None:
            meta["words"] = list(utterance.words)
        if utterance.speaker is not None:
            meta["speaker"] = utterance.speaker
        try:
            audio = Path(utterance.audio).read_bytes()
        except OSError:
            audio = None
        yield SampleInput(utterance.key, utterance.audio, audio, utterance.audio.rsplit(".", 1)[-1].lower(), meta)


def _align_inputs(job: ShardJob, skips: SkipCounter) -> Iterator[SampleInput]:
    """Samples of an existing shard; a sample without KEY.json or audio is skipped (missing_json)."""
    for record in tar_records(job.source_shard, skips):
        if record.defect:
            skips.add(record.defect[0], record.key, record.defect[1])
            continue
        files = dict(record.files)
        ext = next((e for e in AUDIO_EXTENSIONS if e in files), None)
        data = files.pop("json", None)
        if ext is None or data is None:
            skips.add("missing_json", record.key, f"members {sorted(files)}: need audio + KEY.json")
            continue
        try:
            meta = load_json(data, record.key)
        except SkipSample as err:
            skips.add(err.reason, err.where, err.detail)
            continue
        audio = files.pop(ext)
        yield SampleInput(record.name, record.key, audio, ext, meta,
                          {e: b for e, b in files.items() if b is not None})


def _cached(name: str, path: str, build):
    """One aligner / units codec per process, rebuilt only when its file changes."""
    if _worker.get(f"{name}_path") != path or name not in _worker:
        _worker[name], _worker[f"{name}_path"] = build(path), path
    return _worker[name]


def _aligner(options: PackOptions):
    if options.align == "none":
        return None
    from lst_train.data.ingest.aligner import PocketsphinxAligner
    return _cached("aligner", options.dictionary, PocketsphinxAligner)


def _units_codec(options: PackOptions):
    if not options.units:
        return None
    from lst_train.data.speech_units import KMeansUnitCodec
    return _cached("units", options.units, KMeansUnitCodec)


def _report(packed: bool, seconds: float) -> None:
    _worker["report"]((packed, seconds))


def run_job(job: ShardJob, out: Path, options: PackOptions) -> dict:
    """Build one shard and its completion record; returns the record."""
    skips, examples = SkipCounter(), {}
    members: list[tuple[str, bytes]] = []
    stats = Counter()
    speakers: set[str] = set()
    unaligned: list[str] = []
    inputs = _pack_inputs(job) if job.inputs is not None else _align_inputs(job, skips)
    for sample in inputs:
        try:
            built: BuiltSample = build_sample(sample, options, _aligner(options), _units_codec(options))
        except SkipSample as err:
            skips.add(err.reason, err.where, err.detail)
            examples.setdefault(err.reason, [])
            if len(examples[err.reason]) < EXAMPLES_PER_REASON:
                examples[err.reason].append(str(err))
            _report(False, 0.0)
            continue
        members += built.members
        stats.update({"utterances": 1, "words": built.words, built.timing: 1})
        stats["seconds"] += built.seconds
        if built.speaker is not None:
            speakers.add(built.speaker)
        if built.unaligned_because and len(unaligned) < EXAMPLES_PER_REASON:
            unaligned.append(built.unaligned_because)
        _report(True, built.seconds)
    size = write_tar(out / job.name, members)
    record = {"name": job.name, "plan_hash": job.plan_hash, "bytes": size, "utterances": stats["utterances"],
              "seconds": round(stats["seconds"], 3), "words": stats["words"],
              "timings": {k: stats[k] for k in ("given", "aligned", "none")}, "speakers": sorted(speakers),
              "skipped": skips.as_dict(), "skip_examples": examples, "unaligned_examples": unaligned}
    write_json(out / STATE_DIR / f"{job.name}.json", record)
    return record


def _init_worker(queue) -> None:
    _worker["report"] = queue.put


def completed(out: Path, job: ShardJob) -> dict | None:
    """The job's completion record, if it finished under the same plan."""
    path = out / STATE_DIR / f"{job.name}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("plan_hash") == job.plan_hash and (out / job.name).is_file() else None


def run_jobs(jobs: list[ShardJob], out: Path, options: PackOptions, workers: int, total: int | None,
             desc: str) -> list[dict]:
    """Finish every job not yet done (in `workers` processes); returns all completion records in plan order."""
    records = {job.name: completed(out, job) for job in jobs}
    todo = [job for job in jobs if records[job.name] is None]
    done_before = sum(r["utterances"] + sum(r["skipped"].values()) for r in records.values() if r)
    if len(todo) < len(jobs):
        LOG.warning("%s: %d of %d shards already done, finishing the other %d", out, len(jobs) - len(todo),
                    len(jobs), len(todo))
    bar = tqdm(total=total, initial=done_before if total else 0, desc=desc, unit="file", dynamic_ncols=True)
    counts = {"hours": 0.0, "skipped": 0}

    def advance(packed: bool, seconds: float) -> None:
        counts["hours"] += seconds / 3600
        counts["skipped"] += not packed
        bar.update(1)
        bar.set_postfix(hours=f"{counts['hours']:.2f}", skipped=counts["skipped"], refresh=False)

    if workers <= 1 or len(todo) <= 1:
        _worker["report"] = lambda event: advance(*event)
        for job in todo:
            records[job.name] = run_job(job, out, options)
    else:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(queue,)) as pool:
            pending = {pool.submit(run_job, job, out, options): job for job in todo}
            while pending:
                finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in finished:
                    records[pending.pop(future).name] = future.result()
                _drain(queue, advance)
            _drain(queue, advance)
    bar.close()
    return [records[job.name] for job in jobs]


def _drain(queue, advance) -> None:
    while True:
        try:
            advance(*queue.get_nowait())
        except Empty:
            return


def write_index(out: Path, plan: dict, records: list[dict]) -> dict:
    """`index.json`: totals, skips by reason (with examples), alignment coverage, and one line per shard."""
    skipped = merge_skip_counts([plan["planning_skipped"]] + [r["skipped"] for r in records])
    examples: dict[str, list[str]] = {}
    for record in records:
        for reason, items in record["skip_examples"].items():
            examples.setdefault(reason, [])
            examples[reason] += items[: EXAMPLES_PER_REASON - len(examples[reason])]
    utterances = sum(r["utterances"] for r in records)
    timings = {k: sum(r["timings"][k] for r in records) for k in ("given", "aligned", "none")}
    speakers = set().union(*(r["speakers"] for r in records)) if records else set()
    index = {
        "format": INDEX_FORMAT, "kind": plan["kind"], "sources": plan["sources"], "options": plan["options"],
        "utterances": utterances, "hours": round(sum(r["seconds"] for r in records) / 3600, 4),
        "words": sum(r["words"] for r in records), "speakers": len(speakers), "bytes": sum(r["bytes"] for r in records),
        "skipped": skipped, "skip_examples": examples,
        "word_timings": timings | {"coverage": round((timings["given"] + timings["aligned"]) / utterances, 4)
                                   if utterances else 0.0},
        "unaligned_examples": [e for r in records for e in r["unaligned_examples"]][:EXAMPLES_PER_REASON],
        "shards": [{k: r[k] for k in ("name", "utterances", "seconds", "words", "bytes")} for r in records],
    }
    write_json(out / "index.json", index)
    return index


def shard_pattern(out: Path) -> str:
    """The glob a recipe's data.sources[].path uses for the packed shards."""
    return os.path.join(str(out), "*.tar")
