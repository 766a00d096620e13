"""Training throughput of a recipe pair (default: the 1B LST and baseline) on generated units data, side by side.

For each recipe and mix (the published one: 1/3 interleaved speech-text, 2/3 text tokens; and speech only), a short
run of `lst-train train` on this machine's first device, without checkpoints; prints one table: MFU, tokens/s,
speech-seconds/s, data wait, peak memory and compile seconds (the first logged interval's excess over the steady
step time), and the LST / baseline speech-seconds ratio per mix. Each run has its own time limit.

    python bench/train_throughput.py [--recipes recipes/lst_1b.yaml recipes/baseline_1b.yaml] [--steps 20]
                                     [--run-timeout 70] [--out throughput.json] [key=value overrides ...]
"""

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from lst_train.config import load_config
from lst_train.data.text_tokenizer import train_bpe, write_ranks

FRAME_RATE = 12.5  # Mimi's frames per second
WORDS = "the of and to in a that he shall unto for his i lord they be is him not them it with all thou".split()
MIXES = {"published": "[{kind: speech, path: 'SPEECH', weight: 1.0, sequence: interleaved}, "
                      "{kind: text, path: 'TEXT', weight: 2.0}]",
         "speech": "[{kind: speech, path: 'SPEECH', weight: 1.0, sequence: speech}]"}


def write_units_corpus(root: Path, n_utterances: int = 400, seed: int = 0) -> dict[str, str]:
    """Speech shards of KEY.units.json (random codes, words with timings, 8-30 s each), text jsonl, a BPE file."""
    rng = random.Random(seed)
    (root / "speech").mkdir(parents=True)
    with tarfile.open(root / "speech" / "shard-000.tar", "w") as tar:
        for i in range(n_utterances):
            words, t = [], 0.1
            while t < rng.uniform(8, 30):
                end = t + rng.uniform(0.15, 0.6)
                words.append({"word": rng.choice(WORDS), "start": round(t, 3), "end": round(end, 3)})
                t = end + rng.uniform(0.0, 0.2)
            units = [rng.randrange(2048) for _ in range(int((t + 0.1) * FRAME_RATE))]
            data = json.dumps({"units": units, "frame_rate": FRAME_RATE, "words": words}).encode()
            info = tarfile.TarInfo(f"{i:05d}.units.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(50, 400))) for _ in range(2000)]
    (root / "text.jsonl").write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))
    write_ranks(train_bpe(lines[:200], 512), root / "tokenizer.tiktoken")
    return {"SPEECH": str(root / "speech" / "*.tar"), "TEXT": str(root / "text.jsonl"),
            "tokenizer": str(root / "tokenizer.tiktoken")}


def run(recipe: str, mix: str, corpus: dict, steps: int, timeout: float, run_dir: Path, extra: list[str]) -> dict:
    sources = MIXES[mix].replace("SPEECH", corpus["SPEECH"]).replace("TEXT", corpus["TEXT"])
    interval = max(1, steps // 4)
    cmd = [sys.executable, "-m", "lst_train", "train", recipe, f"data.sources={sources}",
           f"data.tokenizer={corpus['tokenizer']}", "data.codec.kind=units", f"training.steps={steps}",
           "training.warmup_steps=2", f"training.log_interval={interval}", "checkpoint.enabled=false",
           f"run_dir={run_dir}", *extra]
    start = time.perf_counter()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        status = "ok" if result.returncode == 0 else f"failed (rc {result.returncode}): {result.stderr[-300:]!r}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    row = {"recipe": Path(recipe).stem, "arch": load_config(recipe).model.arch, "mix": mix, "status": status,
           "wall_s": time.perf_counter() - start}
    metrics = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    if not records:
        return row
    previous, seconds = 0, []
    for record in records:  # an interval's seconds = its tokens / its tokens per second
        seconds.append((record["tokens_seen"] - previous) / record["tokens_per_s"])
        previous = record["tokens_seen"]
    steady = records[1:] or records
    step_s = statistics.median(s / interval for s in seconds[1:]) if len(seconds) > 1 else seconds[0] / interval
    row.update(steps=records[-1]["step"], step_s=step_s, compile_s=max(0.0, seconds[0] - interval * step_s),
               **{key: statistics.median(r[key] for r in steady) for key in
                  ("mfu", "tokens_per_s", "speech_seconds_per_s", "data_wait_frac")},
               mem_gb=max(r["mem_gb"] for r in records))
    return row


def table(rows: list[dict]) -> str:
    lines = ["| recipe | mix | status | steps | MFU | tokens/s | speech s/s | data wait | peak GB | step s | compile s |",
             "|" + "---|" * 11]
    for r in rows:
        if "mfu" not in r:
            lines.append(f"| {r['recipe']} | {r['mix']} | {r['status']} |" + " - |" * 8)
            continue
        lines.append(f"| {r['recipe']} | {r['mix']} | {r['status']} | {r['steps']} | {r['mfu']:.1%} "
                     f"| {r['tokens_per_s']:,.0f} | {r['speech_seconds_per_s']:,.1f} | {r['data_wait_frac']:.1%} "
                     f"| {r['mem_gb']:.1f} | {r['step_s']:.3f} | {r['compile_s']:.0f} |")
    for mix in MIXES:
        lst, base = (next((r for r in rows if r["mix"] == mix and r["arch"] == arch and "mfu" in r), None)
                     for arch in ("lst", "baseline"))
        if lst and base and base["speech_seconds_per_s"]:
            lines.append(f"\n{mix}: LST / baseline speech-seconds per second = "
                         f"{lst['speech_seconds_per_s'] / base['speech_seconds_per_s']:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["recipes/lst_1b.yaml", "recipes/baseline_1b.yaml"])
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), choices=list(MIXES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--run-timeout", type=float, default=70.0, help="seconds per run")
    parser.add_argument("--out", default="", help="also write the rows as JSON here")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_units_corpus(Path(tmp) / "corpus")
        rows = []
        for mix in args.mixes:
            for recipe in args.recipes:
                rows.append(run(recipe, mix, corpus, args.steps, args.run_timeout,
                                Path(tmp) / f"{Path(recipe).stem}-{mix}", args.overrides))
                print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
