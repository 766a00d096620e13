"""Mimi's batched on-the-fly encoding on this machine's first device (random weights, real audio from the test
assets), in seconds of audio per second, against the speech-seconds per second the LST trains on (read from a
bench/train_throughput.py JSON): how much of a training step tokenizing in the loop would cost.

    python bench/mimi_encode.py [--device cuda] [--batch-size 32] [--seconds 10] [--throughput throughput.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch

from lst_train.config.data import CodecConfig
from lst_train.data.speech_codec import MimiCodec

ASSETS = Path(__file__).resolve().parents[1] / "tests" / "assets" / "librivox"


def real_clips(rate: int, seconds: float, count: int) -> list[np.ndarray]:
    """`count` clips of `seconds` cut from the LibriVox recordings (looped), resampled to `rate`."""
    audio = []
    for path in sorted(ASSETS.glob("*.wav")) + sorted(ASSETS.glob("*.flac")):
        samples, source_rate = soundfile.read(path, dtype="float32", always_2d=True)
        audio.append(soxr.resample(samples.mean(axis=1), source_rate, rate))
    joined = np.concatenate(audio)
    length = int(seconds * rate)
    joined = np.tile(joined, length * count // len(joined) + 1)
    return [joined[i * length: (i + 1) * length].astype(np.float32) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    parser.add_argument("--batches", type=int, default=3, help="timed batches (after one warm-up batch)")
    parser.add_argument("--throughput", default="", help="bench/train_throughput.py --out JSON to compare with")
    args = parser.parse_args()
    codec = MimiCodec(CodecConfig(device=args.device, batch_size=args.batch_size), 1)
    clips = real_clips(codec.sample_rate, args.seconds, args.batch_size)
    codec.encode_batch(clips)  # warm-up: kernels, allocator
    if args.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.batches):
        codec.encode_batch(clips)
    rate = args.batches * args.batch_size * args.seconds / (time.perf_counter() - start)
    print(f"Mimi on {args.device}, batches of {args.batch_size} x {args.seconds:g} s: {rate:,.0f} s of audio "
          "encoded per second")
    if args.throughput and Path(args.throughput).exists():
        rows = json.loads(Path(args.throughput).read_text())
        trained = next((r["speech_seconds_per_s"] for r in rows
                        if r.get("arch") == "lst" and r["mix"] == "speech" and "speech_seconds_per_s" in r), None)
        if trained:
            print(f"the LST trains on {trained:,.0f} speech-seconds/s (speech only): Mimi encodes "
                  f"{rate / trained:.1f}x that (target >= 10x: tokenizing in the loop costs < 1/10 of a step)")


if __name__ == "__main__":
    main()
