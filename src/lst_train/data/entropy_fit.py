"""Fit the entropy patcher's table on a recipe's speech: its speech sources read as speech-only documents by the
loader's own stages (same decoding, same codec, same vocabulary), each span's first-codebook codes counted."""

import dataclasses

import numpy as np

from lst_train.config import ConfigError, DataConfig, ModelConfig
from lst_train.data.entropy_table import EntropyTable
from lst_train.data.heldout import heldout_documents
from lst_train.data.skips import SkipCounter
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.data.token_cache import codec_key
from lst_train.vocab import Vocab


DOCUMENTS = 2000
"""Documents read from each speech source by default."""
SMOOTHING = 0.1
"""Add-k smoothing of the bigram counts by default."""


def fit_entropy_table(data: DataConfig, model: ModelConfig, skips: SkipCounter, max_documents: int = DOCUMENTS,
                      smoothing: float = SMOOTHING) -> tuple[EntropyTable, int]:
    """The table fitted on the first `max_documents` documents of each speech source (shard order; sources on the
    same files, e.g. interleaved and speech-only views of one corpus, read once), and the number of documents read;
    unusable documents are skipped and counted in `skips`."""
    sources, paths = [], set()
    for source in data.sources:
        if source.kind == "speech" and source.path not in paths:
            paths.add(source.path)
            sources.append(dataclasses.replace(source, sequence="speech"))
    if not sources:
        raise ConfigError("data.sources: no speech source to fit the entropy table on; add one (kind: speech)")
    vocab = Vocab.from_config(model.vocab)
    tokenizer = SpeechTextTokenizer.from_config(data, vocab)
    documents = heldout_documents(data, sources, tokenizer, max_documents, 2**62, skips)
    sequences = [vocab.speech_codes(span.tokens)[:, 0] for held in documents for span in held.document.spans
                 if span.speech and span.tokens]
    if not any(len(codes) for codes in sequences):
        raise ConfigError(f"data.sources: no speech frame in the {len(documents)} documents read from the speech "
                          f"sources {[source.path for source in sources]}; check them with `lst-train data inspect`")
    table = EntropyTable.fit(sequences, vocab.speech_codebook_size, codec_key(data.codec, model.vocab.n_codebooks),
                             smoothing)
    return table, len(documents)


def entropy_summary(table: EntropyTable, mean_frames: tuple[int, ...] = (2, 3, 4, 6, 8)) -> dict:
    """What a user chooses a threshold by: frames and codes seen, the frame-weighted mean entropy, and the
    threshold for each mean patch length."""
    frames = int(table.frames.sum())
    mean = float((table.entropy * table.frames).sum() / max(frames, 1))
    return {"frames": frames, "codes_seen": int(np.count_nonzero(table.frames)), "mean_entropy": round(mean, 4),
            "max_entropy": round(float(np.log(len(table.entropy))), 4),
            "thresholds": {str(n): round(table.threshold(n), 4) for n in mean_frames}}
