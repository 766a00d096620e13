"""Speech audio -> discrete 25 Hz units: k-means over MFCC frames (the first iteration of HuBERT's targets).

A random-weight Mimi gives codes that follow the acoustics but carry no learned phonetic structure; k-means over
MFCCs is the classic offline alternative that does, and needs nothing but the corpus. `lst-train tokenizer
train-units` fits the centroids (`fit_units`) and writes a units file; `data.codec.kind=kmeans` with
`data.codec.weights=FILE` then encodes audio with it wherever Mimi would (training, held-out loss, evaluation).
Units cannot be turned back into audio: generation writes their ids, not a wav.
"""

import functools
import json
import math

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from scipy.cluster.vq import kmeans2, vq
from scipy.fft import dct

from lst_train.config import ConfigError
from lst_train.config.model import VocabConfig
from lst_train.data.audio import AUDIO_EXTENSIONS, decode_audio
from lst_train.data.shards import list_shards, tar_records
from lst_train.data.skips import SkipCounter, SkipSample

FORMAT = "lst-kmeans-mfcc-1"
SAMPLE_RATE = 16000
FRAME_RATE = 25.0
HOP = 160  # 10 ms analysis frames; four are averaged into one 40 ms unit frame
WINDOW = 400  # 25 ms
STACK = round(SAMPLE_RATE / HOP / FRAME_RATE)
N_MELS = 40
N_MFCC = 13


@functools.cache
def _mel_filters() -> torch.Tensor:
    """[257, 40] HTK mel filters; transformers is heavy, so imported only where units are computed."""
    from transformers.audio_utils import mel_filter_bank

    return torch.from_numpy(mel_filter_bank(num_frequency_bins=257, num_mel_filters=N_MELS, min_frequency=20.0,
                                            max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE,
                                            mel_scale="htk")).float()


def unit_frames(n_samples: int) -> int:
    """Unit frames of a clip: one per whole 40 ms (at least one)."""
    return max(1, n_samples // (HOP * STACK))


def mfcc_features(audio: np.ndarray) -> np.ndarray:
    """float32 [samples] at 16 kHz -> float32 [unit_frames, 39]: 13 MFCCs with deltas and delta-deltas at 100 Hz,
    mean/variance-normalised over the clip (speaker and channel), averaged over each 40 ms."""
    wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    n = unit_frames(len(wave))
    wave = torch.nn.functional.pad(wave, (0, max(0, n * HOP * STACK + WINDOW - len(wave))))
    power = torch.stft(wave, n_fft=512, hop_length=HOP, win_length=WINDOW, window=torch.hann_window(WINDOW),
                       center=False, return_complex=True).abs().pow(2).T  # [frames, 257]
    log_mel = torch.log(power @ _mel_filters() + 1e-6).numpy()
    mfcc = dct(log_mel, type=2, norm="ortho", axis=1)[:, :N_MFCC]
    delta = np.gradient(mfcc, axis=0)  # the padding above leaves at least STACK + 1 analysis frames
    delta2 = np.gradient(delta, axis=0)
    frames = np.concatenate([mfcc, delta, delta2], axis=1)[: n * STACK]
    frames = (frames - frames.mean(axis=0)) / (frames.std(axis=0) + 1e-5)
    return frames.reshape(n, STACK, -1).mean(axis=1).astype(np.float32)


def fit_units(features: np.ndarray, n_units: int, seed: int = 0, iterations: int = 20) -> dict[str, np.ndarray]:
    """K-means (k-means++ start) over [frames, 39] features, whitened per dimension first: the units file's
    tensors ({"centroids", "mean", "std"})."""
    if len(features) < n_units:
        raise ValueError(f"{len(features)} feature frames cannot make {n_units} units; give more audio")
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-5
    centroids, _ = kmeans2((features - mean) / std, n_units, iter=iterations, minit="++",
                           seed=np.random.default_rng(seed))
    return {"centroids": centroids.astype(np.float32), "mean": mean.astype(np.float32),
            "std": std.astype(np.float32)}


def _speech_clips(shards: list[str], skips: SkipCounter):
    """The audio of every speech record of `shards` at 16 kHz, in order; bad records skipped and counted."""
    for shard in shards:
        for record in tar_records(shard, skips):
            ext = next((e for e in AUDIO_EXTENSIONS if e in record.files), None)
            try:
                if record.defect:
                    raise SkipSample(record.defect[0], record.key, record.defect[1])
                if ext is None:
                    raise SkipSample("missing_audio", record.key, f"members {sorted(record.files)}")
                yield decode_audio(record.files[ext], record.key, SAMPLE_RATE, 3600.0, 1e-4)
            except SkipSample as skip:
                skips.add(skip.reason, skip.where, skip.detail)


def corpus_features(patterns: list[str], max_minutes: float, skips: SkipCounter) -> tuple[np.ndarray, dict]:
    """MFCC unit-frame features of the speech shards matching `patterns`, in sorted shard order, up to
    `max_minutes` of audio; unreadable or bad audio is skipped and counted in `skips`."""
    shards = sorted({path for pattern in patterns for path in list_shards(pattern)})
    if not shards:
        raise ValueError(f"no speech shard matches {patterns}")
    features, seconds = [], 0.0
    for audio in _speech_clips(shards, skips):
        features.append(mfcc_features(audio))
        seconds += len(audio) / SAMPLE_RATE
        if seconds >= max_minutes * 60:
            break
    if not features:
        raise ValueError(f"no readable audio in {len(shards)} shard(s) matching {patterns}")
    return np.concatenate(features), {"clips": len(features), "seconds": seconds, "shards": len(shards)}


def assign_units(features: np.ndarray, tensors: dict[str, np.ndarray]) -> np.ndarray:
    """[frames, 39] features -> int64 [frames]: the nearest centroid of each, in the whitened space."""
    codes, _ = vq((features - tensors["mean"]) / tensors["std"], tensors["centroids"])
    return codes.astype(np.int64)


def save_units(tensors: dict[str, np.ndarray], path: str, summary: dict) -> None:
    # One metadata entry: safetensors writes several in no fixed order, and the demo corpus is byte-reproducible.
    info = {"format": FORMAT, "sample_rate": SAMPLE_RATE, "frame_rate": FRAME_RATE, "summary": summary}
    save_file(tensors, path, metadata={"lst_units": json.dumps(info, sort_keys=True)})


def train_units(patterns: list[str], n_units: int, out: str, max_minutes: float, seed: int,
                skips: SkipCounter) -> dict:
    """Fit `n_units` units on the speech of the shards matching `patterns` and write the units file `out`; returns
    its summary (also stored in the file): audio read, frames, units in use and their entropy, skips."""
    features, read = corpus_features(patterns, max_minutes, skips)
    tensors = fit_units(features, n_units, seed)
    summary = {**read, "frames": len(features), "units": n_units, "seed": seed,
               **units_summary(assign_units(features, tensors), n_units), "skipped": skips.as_dict()}
    save_units(tensors, out, summary)
    return summary


class KMeansUnitCodec:
    """Encodes 16 kHz mono audio into [frames, 1] unit ids at 25 Hz with the centroids of a units file."""

    n_codebooks = 1
    sample_rate = SAMPLE_RATE
    frame_rate = FRAME_RATE

    def __init__(self, path: str):
        try:
            self.tensors = load_file(path)
        except SafetensorError as err:
            raise ValueError(f"not a safetensors file ({err})") from None
        if set(self.tensors) != {"centroids", "mean", "std"}:
            raise ValueError(f"not a units file of `lst-train tokenizer train-units` (tensors {sorted(self.tensors)})")
        self.codebook_size = len(self.tensors["centroids"])

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """float32 [samples] at 16 kHz -> int64 [frames, 1]: the nearest centroid of each 40 ms frame."""
        return assign_units(mfcc_features(audio), self.tensors)[:, None]

    def encode_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        return [self.encode(audio) for audio in audios]


def check_units_file(path: str, vocab: VocabConfig) -> None:
    """Start-up check of data.codec.kind=kmeans against the model's speech vocabulary (one ConfigError line)."""
    try:
        size = KMeansUnitCodec(path).codebook_size
    except (OSError, ValueError) as err:
        raise ConfigError(f"data.codec.weights: {path!r} is not a readable units file ({err}); make one with "
                          "`lst-train tokenizer train-units`") from None
    if vocab.n_codebooks != 1:
        raise ConfigError(f"model.vocab.n_codebooks: k-means units are one codebook; set model.vocab.n_codebooks=1, "
                          f"got {vocab.n_codebooks}")
    if vocab.speech_codebook_size != size:
        raise ConfigError(f"model.vocab.speech_codebook_size: the units file {path!r} has {size} units; set "
                          f"model.vocab.speech_codebook_size={size}, got {vocab.speech_codebook_size}")


def units_summary(codes: np.ndarray, n_units: int) -> dict:
    """Units in use and the entropy of their distribution over `codes` (nats; ln n_units when uniform)."""
    counts = np.bincount(codes.ravel(), minlength=n_units)
    p = counts[counts > 0] / counts.sum()
    return {"units_used": int((counts > 0).sum()), "entropy_nats": float(-(p * np.log(p)).sum()),
            "max_entropy_nats": math.log(n_units)}
