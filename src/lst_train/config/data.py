"""Typed config of the data pipeline (the `data` section of a recipe) and its start-up checks."""

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum

from lst_train.config.errors import check


class SourceKind(StrEnum):
    speech = "speech"
    text = "text"


class CodecKind(StrEnum):
    mimi = "mimi"
    kmeans = "kmeans"
    units = "units"


SPEECH_SEQUENCES = ("interleaved", "speech", "asr", "tts")
"""What a speech source's utterances become (SourceConfig.sequence)."""
TASK_SEQUENCES = ("asr", "tts")
"""Sequences made of a prompt in one modality and its answer in the other."""


@dataclass
class SourceConfig:
    kind: SourceKind = SourceKind.text
    """'speech' (WebDataset .tar shards: audio + transcript + word timings, or units) or 'text' (.jsonl[.zst])."""
    path: str = ""
    """Glob of the shard files, e.g. /data/speech/*.tar (relative to the working directory)."""
    weight: float = 1.0
    """Mixture weight: this source's share of the training tokens is weight / (sum of the weights)."""
    sequence: str = ""
    """Speech sources: 'interleaved' (default: alternating text and speech word spans), 'speech' (speech only),
    'asr' (an utterance's speech, then its transcript) or 'tts' (the transcript, then its speech); text sources:
    'text' (default). A string, not an Enum: its empty default means "the kind's default", which every saved run
    config holds."""
    prompt_loss: bool = False
    """asr / tts sequences: also train on the prompt (ASR's speech, TTS's text and the marker that cues the
    answer). False: only the answer and its <eos> are targets, as in task fine-tuning."""

    @property
    def sequence_kind(self) -> str:
        """The sequence type, defaults resolved."""
        return self.sequence or ("interleaved" if self.kind == "speech" else "text")


def source_names(sources: list[SourceConfig]) -> list[str]:
    """One short name per source for reports: 'INDEX:KIND/SEQUENCE', e.g. '0:speech/interleaved'."""
    return [f"{i}:{source.kind}/{source.sequence_kind}" for i, source in enumerate(sources)]


def source_shares(sources: list[SourceConfig]) -> list[float]:
    """The share of the training tokens each source is meant to supply: its weight over the sum of the weights."""
    total = sum(source.weight for source in sources)
    return [source.weight / total for source in sources]


@dataclass
class CodecConfig:
    kind: CodecKind = CodecKind.mimi
    """'mimi' (encode audio on the fly), 'kmeans' (25 Hz k-means units over MFCCs, encoded on the fly with the
    units file in `weights`) or 'units' (only samples with pre-computed KEY.units.json)."""
    weights: str = ""
    """mimi: local directory of pretrained Mimi weights (transformers format); empty = random weights, seeded
    codebooks. kmeans: the units file written by `lst-train tokenizer train-units`."""
    seed: int = 0
    """Seed of the random Mimi weights and codebooks (ignored with `weights`)."""
    device: str = "cpu"
    """Where Mimi runs: 'cpu' (in each loader worker) or 'cuda' (in the training process: use num_workers=0)."""
    batch_size: int = 1
    """Utterances Mimi encodes together, right-padded into one batch (on a GPU, 16-64 keep it busy)."""
    max_seconds: float = 120.0
    """Longer audio is skipped (counted as audio_too_long)."""
    silence_threshold: float = 1e-4
    """Audio whose peak amplitude is below this is skipped as silent."""


@dataclass
class InterleaveConfig:
    min_text_words: int = 4
    """Shortest text span of an interleaved document, in words."""
    max_text_words: int = 16
    """Longest text span, in words."""
    speech_to_text_words: float = 0.5
    """Each speech span is about this fraction of the preceding text span's words (speech tokens are ~5-7× longer)."""


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    """The mixture: a list of {kind, path, weight, sequence}."""
    tokenizer: str = ""
    """tiktoken BPE ranks file for text (make one with `lst-train tokenizer train`), or 'bytes' for byte-level text
    (256 ids, no file)."""
    seq_units: int = 512
    """Global positions per packed row: patches for the LST, tokens for the baseline (fixed compute per step)."""
    max_row_tokens: int = 0
    """Token cap of a packed row (0 = none): a row stops short of seq_units when the next patch would pass it
    (counted as capped_rows), bounding the LST's token length, hence memory and the number of shapes. It must
    hold <bos> and the longest patch; it applies before padding to pad_to_multiple."""
    batch_size: int = 4
    """Rows per micro-batch on each rank."""
    num_workers: int = 0
    """Loader worker processes per rank (0 = in the training process)."""
    seed: int = 0
    """Seed of shard order, mixture draws, interleaving and patcher choices."""
    shuffle_buffer: int = 0
    """Documents each source holds and draws from at random (0 = shard order). Shards are already reshuffled every
    epoch; this also mixes the documents within and across neighbouring shards (a shard is often one book or one
    speaker). The buffer travels in the loader state: memory and checkpoint size grow with it."""
    pad_to_multiple: int = 64
    """Pad each batch's token length up to a multiple of this (fewer distinct shapes for torch.compile)."""
    cache_dir: str = ""
    """Directory of the speech-token cache (empty = no cache): later epochs read tokens instead of re-encoding."""
    codec: CodecConfig = field(default_factory=CodecConfig)
    """Speech tokenizer."""
    interleave: InterleaveConfig = field(default_factory=InterleaveConfig)
    """Span lengths of interleaved documents."""


def validate_sources(sources: list[SourceConfig], key: str) -> None:
    """Start-up checks of a list of sources under `key` (data.sources, evaluation.validation)."""
    for i, source in enumerate(sources):
        item = f"{key}[{i}]"
        check(bool(source.path), f"{item}.path", "must be a glob of shard files, e.g. data/speech/*.tar")
        check(source.weight > 0 and math.isfinite(source.weight), f"{item}.weight",
              f"must be a finite number > 0, got {source.weight}")
        allowed = ("text",) if source.kind == "text" else SPEECH_SEQUENCES
        check(source.sequence_kind in allowed, f"{item}.sequence",
              f"must be one of {allowed} for a {source.kind} source, got {source.sequence!r}")
        check(not source.prompt_loss or source.sequence_kind in TASK_SEQUENCES, f"{item}.prompt_loss",
              f"applies to {TASK_SEQUENCES} sequences only (a {source.sequence_kind} sequence has no prompt): "
              "remove it")


def validate_data(cfg: DataConfig) -> None:
    """Start-up checks of the data section (raise the one-line ConfigError)."""
    validate_sources(cfg.sources, "data.sources")
    check(cfg.seq_units >= 8, "data.seq_units", f"must be >= 8, got {cfg.seq_units}")
    check(cfg.max_row_tokens == 0 or cfg.max_row_tokens >= cfg.seq_units, "data.max_row_tokens",
          f"must be 0 (no cap) or >= data.seq_units={cfg.seq_units} (a unit holds at least one token), "
          f"got {cfg.max_row_tokens}")
    check(cfg.batch_size >= 1, "data.batch_size", f"must be >= 1, got {cfg.batch_size}")
    check(cfg.num_workers >= 0, "data.num_workers", f"must be >= 0, got {cfg.num_workers}")
    check(cfg.pad_to_multiple >= 1, "data.pad_to_multiple", f"must be >= 1, got {cfg.pad_to_multiple}")
    check(cfg.shuffle_buffer >= 0, "data.shuffle_buffer", f"must be >= 0 (0 = shard order), got {cfg.shuffle_buffer}")
    check(cfg.codec.kind != "kmeans" or cfg.codec.weights != "", "data.codec.weights",
          "data.codec.kind=kmeans needs the units file: make one with `lst-train tokenizer train-units`")
    check(cfg.codec.batch_size >= 1, "data.codec.batch_size", f"must be >= 1, got {cfg.codec.batch_size}")
    check(re.fullmatch(r"cpu|cuda(:\d+)?", cfg.codec.device) is not None, "data.codec.device",
          f"must be 'cpu', 'cuda' or 'cuda:N', got {cfg.codec.device!r}")
    check(cfg.codec.max_seconds > 0, "data.codec.max_seconds",
          f"must be > 0 (longer audio is skipped), got {cfg.codec.max_seconds}")
    check(0 <= cfg.codec.silence_threshold < math.inf, "data.codec.silence_threshold",
          f"must be a finite peak amplitude >= 0 (0 keeps all audio), got {cfg.codec.silence_threshold}")
    check(cfg.codec.device == "cpu" or cfg.num_workers == 0, "data.codec.device",
          "a GPU codec runs in the training process: set data.num_workers=0 or data.codec.device=cpu")
    inter = cfg.interleave
    check(1 <= inter.min_text_words <= inter.max_text_words, "data.interleave.min_text_words",
          f"must be between 1 and data.interleave.max_text_words={inter.max_text_words}, got {inter.min_text_words}")
    check(inter.speech_to_text_words > 0, "data.interleave.speech_to_text_words",
          f"must be > 0, got {inter.speech_to_text_words}")
