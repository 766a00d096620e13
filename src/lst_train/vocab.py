"""The vocabulary layout shared by model, data and evaluation.

Ids, in order: text BPE ids [0, text_size); speech ids, one block of `speech_codebook_size` per codebook; then the
specials <bos> <eos> <pad> <t> <s>. <eos> ends a document inside a packed row; <t> / <s> open a text / speech span.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

SPECIALS = ("<bos>", "<eos>", "<pad>", "<t>", "<s>")
MODALITY_TEXT = 0
MODALITY_SPEECH = 1


@dataclass(frozen=True)
class Vocab:
    text_size: int
    speech_codebook_size: int
    n_codebooks: int = 1

    @classmethod
    def from_config(cls, cfg) -> "Vocab":
        """Build from a `VocabConfig`."""
        return cls(cfg.text_size, cfg.speech_codebook_size, cfg.n_codebooks)

    @property
    def speech_start(self) -> int:
        return self.text_size

    @property
    def speech_end(self) -> int:
        return self.text_size + self.speech_codebook_size * self.n_codebooks

    @property
    def bos(self) -> int:
        return self.speech_end

    @property
    def eos(self) -> int:
        return self.speech_end + 1

    @property
    def pad(self) -> int:
        return self.speech_end + 2

    @property
    def text_marker(self) -> int:
        return self.speech_end + 3

    @property
    def speech_marker(self) -> int:
        return self.speech_end + 4

    @property
    def size(self) -> int:
        return self.speech_end + len(SPECIALS)

    def speech_id(self, code: int, codebook: int = 0) -> int:
        """The token id of speech code `code` of codebook `codebook`."""
        if not 0 <= code < self.speech_codebook_size or not 0 <= codebook < self.n_codebooks:
            raise ValueError(f"speech code {code} / codebook {codebook} outside the vocabulary")
        return self.speech_start + codebook * self.speech_codebook_size + code

    def speech_ids(self, codes: np.ndarray) -> list[int]:
        """Codec frames int [frames, n_codebooks] -> token ids, frame-major."""
        codes = np.asarray(codes, dtype=np.int64)  # int16 codes plus a large offset must not wrap
        return (codes + self.speech_start + self.speech_codebook_size * np.arange(codes.shape[1])).reshape(-1).tolist()

    def speech_codes(self, ids: list[int]) -> np.ndarray:
        """Frame-major speech ids -> codes int64 [frames, n_codebooks] (an unfinished last frame is dropped)."""
        per_frame = self.n_codebooks
        whole = np.asarray(ids[: len(ids) // per_frame * per_frame], dtype=np.int64).reshape(-1, per_frame)
        return (whole - self.speech_start) % self.speech_codebook_size

    def is_speech(self, ids: Tensor) -> Tensor:
        return (ids >= self.speech_start) & (ids < self.speech_end)

    def modality(self, ids: Tensor) -> Tensor:
        """Per-token modality: MODALITY_SPEECH for speech ids, MODALITY_TEXT for text ids and specials."""
        return torch.where(self.is_speech(ids), MODALITY_SPEECH, MODALITY_TEXT)

    def special_name(self, token_id: int) -> str | None:
        offset = token_id - self.speech_end
        return SPECIALS[offset] if 0 <= offset < len(SPECIALS) else None
