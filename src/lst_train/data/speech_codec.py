"""Speech audio -> discrete frames with the Mimi codec (transformers' MimiModel).

With no weights directory, Mimi gets random weights; its codebooks start all-zero (every code would be 0), so
they are filled from a seeded generator: the codes then depend on the audio, which is what tests need.
"""

import numpy as np
import torch
from transformers import MimiConfig, MimiModel

from lst_train.data.config import CodecConfig


class MimiCodec:
    """Encodes 24 kHz mono audio into [frames, n_codebooks] codes at 12.5 Hz (codebook 0 is the semantic one)."""

    def __init__(self, cfg: CodecConfig, n_codebooks: int):
        self.n_codebooks = n_codebooks
        self.device = torch.device(cfg.device)
        if cfg.weights:
            model = MimiModel.from_pretrained(cfg.weights, local_files_only=True)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                model = MimiModel(MimiConfig())
                self._randomize_codebooks(model)
        self.model = model.to(self.device).eval()
        self.sample_rate = int(model.config.sampling_rate)
        self.frame_rate = float(model.config.frame_rate)
        self.codebook_size = int(model.config.codebook_size)
        if n_codebooks > model.config.num_quantizers:
            raise ValueError(f"Mimi has {model.config.num_quantizers} codebooks, {n_codebooks} requested")

    @staticmethod
    def _randomize_codebooks(model: MimiModel) -> None:
        for name, buffer in model.named_buffers():
            if name.endswith("codebook.embed_sum"):
                buffer.normal_()
            elif name.endswith("codebook.cluster_usage") or name.endswith("codebook.initialized"):
                buffer.fill_(1.0)

    @torch.inference_mode()
    def encode(self, audio: np.ndarray) -> np.ndarray:
        """audio: float32 [samples] at `sample_rate` -> int64 [frames, n_codebooks]."""
        wave = torch.from_numpy(audio).to(self.device)[None, None]
        codes = self.model.encode(wave, num_quantizers=self.n_codebooks).audio_codes  # [1, n_q, frames]
        return codes[0].T.cpu().numpy().astype(np.int64)
