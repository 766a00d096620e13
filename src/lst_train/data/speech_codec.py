"""Speech audio -> discrete frames with the Mimi codec (transformers' MimiModel).

With no weights directory, Mimi gets random weights. Its codebooks start all-zero (every code would be 0), and
random codes far from the encoder's latents collapse onto a handful of ids, so the codebooks are initialised the
way k-means is: from the latents of seeded, speech-like calibration audio (residual by residual). The codes then
follow the audio, which is what the tests and the CPU demo need.
"""

import math
import os

import numpy as np
import torch

from lst_train.config import ConfigError
from lst_train.config.data import CodecConfig
from lst_train.config.errors import check
from lst_train.config.model import VocabConfig
from lst_train.data.speech_units import KMeansUnitCodec

CALIBRATION_SECONDS = 8.0


class _LatentsCaptured(Exception):
    """Stops MimiModel.encode right after the encoder, before any code lookup caches the empty codebooks."""


def calibration_audio(generator: torch.Generator, rate: int, seconds: float) -> torch.Tensor:
    """Speech-like noise: harmonic tones with gliding pitch, noise bursts, syllable-rate amplitude. [1, 1, n]."""
    n = int(rate * seconds)
    t = torch.arange(n) / rate
    f0 = 80 + 200 * torch.rand(1, generator=generator) + 60 * torch.sin(2 * math.pi * 0.3 * t)
    phase = 2 * math.pi * torch.cumsum(f0 / rate, dim=0)
    harmonics = sum(torch.sin(k * phase) / k for k in range(1, 8))
    noise = torch.randn(n, generator=generator)
    envelope = (torch.sin(2 * math.pi * 4.0 * t + 3 * torch.rand(1, generator=generator)) + 1) / 2
    voiced = (torch.sin(2 * math.pi * 0.7 * t) > 0).float()
    audio = envelope * (voiced * harmonics * 0.2 + (1 - voiced) * noise * 0.1)
    return audio.view(1, 1, n)


class MimiCodec:
    """Encodes 24 kHz mono audio into [frames, n_codebooks] codes at 12.5 Hz (codebook 0 is the semantic one)."""

    def __init__(self, cfg: CodecConfig, n_codebooks: int):
        from transformers import MimiConfig, MimiModel  # heavy: imported only where a codec is built

        self.n_codebooks = n_codebooks
        self.device = torch.device(cfg.device)
        if cfg.weights:
            model = MimiModel.from_pretrained(cfg.weights, local_files_only=True)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                model = MimiModel(MimiConfig()).eval()
            self._calibrate_codebooks(model, torch.Generator().manual_seed(cfg.seed))
        self.model = model.to(self.device).eval()
        self.sample_rate = int(model.config.sampling_rate)
        self.frame_rate = float(model.config.frame_rate)
        self.frame_samples = round(self.sample_rate / self.frame_rate)  # 1920: the encoder's total stride
        self.codebook_size = int(model.config.codebook_size)
        if n_codebooks > model.config.num_quantizers:
            raise ValueError(f"Mimi has {model.config.num_quantizers} codebooks, {n_codebooks} requested")

    @staticmethod
    @torch.no_grad()
    def _calibrate_codebooks(model: torch.nn.Module, generator: torch.Generator) -> None:
        captured = []

        def capture(_module, _inputs, output):
            captured.append(output)
            raise _LatentsCaptured

        hook = model.encoder.downsample.register_forward_hook(capture)
        try:
            model.encode(calibration_audio(generator, model.config.sampling_rate, CALIBRATION_SECONDS))
        except _LatentsCaptured:
            pass
        finally:
            hook.remove()
        latents = captured[0]  # [1, hidden, frames]
        quantizer = model.quantizer
        for rvq in (quantizer.semantic_residual_vector_quantizer, quantizer.acoustic_residual_vector_quantizer):
            projected = rvq.input_proj(latents) if rvq.input_proj is not None else latents
            residual = projected[0].T  # [frames, codebook_dim]
            for layer in rvq.layers:
                codebook = layer.codebook
                size = codebook.embed_sum.shape[0]
                picks = residual[torch.randint(len(residual), (size,), generator=generator)]
                spread = residual.std(dim=0, keepdim=True) * 0.3
                codebook.embed_sum.copy_(picks + spread * torch.randn(picks.shape, generator=generator))
                codebook.cluster_usage.fill_(1.0)
                codebook.initialized.fill_(1.0)
                residual = residual - codebook.decode(codebook.encode(residual))

    @torch.inference_mode()
    def encode_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Several float32 [samples] clips at `sample_rate`, right-padded into one batch -> int64 [frames_i,
        n_codebooks] each, the same codes whatever the batch. Mimi is causal, but a clip ending mid-frame is padded
        with zeros inside each layer when alone, and with the activations of zero samples next to a longer clip:
        so every clip is first zero-padded to whole frames, where no layer pads, alone or batched."""
        lengths = torch.tensor([len(a) for a in audios])
        whole_frames = -(-int(lengths.max()) // self.frame_samples) * self.frame_samples
        wave = torch.zeros(len(audios), 1, whole_frames)
        for i, audio in enumerate(audios):
            wave[i, 0, : len(audio)] = torch.from_numpy(audio)
        mask = (torch.arange(wave.shape[-1])[None] < lengths[:, None]).long()
        # cuDNN runs fp32 convolutions in TF32 by default: ~1e-3 relative error flips codes near a tie, so a GPU
        # codec would write other tokens than a CPU one into the same token cache. Full fp32, deterministic.
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
            codes = self.model.encode(wave.to(self.device), padding_mask=mask.to(self.device),
                                      num_quantizers=self.n_codebooks).audio_codes.cpu()  # [B, n_q, frames]
        frames = self.model.get_encoded_length(lengths).tolist()
        return [codes[i, :, : frames[i]].T.numpy().astype(np.int64) for i in range(len(audios))]

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """audio: float32 [samples] at `sample_rate` -> int64 [frames, n_codebooks]."""
        return self.encode_batch([audio])[0]

    @torch.inference_mode()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int64 [frames, n_codebooks] -> float32 audio [samples] at `sample_rate` (Mimi's decoder)."""
        audio_codes = torch.from_numpy(np.ascontiguousarray(codes.T))[None].to(self.device)
        return self.model.decode(audio_codes).audio_values[0, 0].float().cpu().numpy()


def check_mimi(cfg: CodecConfig, vocab: VocabConfig) -> None:
    """Start-up check of data.codec.kind=mimi against the model's speech vocabulary (one ConfigError line): a
    smaller codebook would map codes onto the specials or past the vocabulary."""
    from transformers import MimiConfig  # heavy: imported only when the recipe uses Mimi

    # from_pretrained gives the default config for a directory without config.json: look for it first
    try:
        if cfg.weights and not os.path.isfile(os.path.join(cfg.weights, "config.json")):
            raise OSError("no config.json")
        config = MimiConfig.from_pretrained(cfg.weights, local_files_only=True) if cfg.weights else MimiConfig()
    except (OSError, ValueError) as err:
        raise ConfigError(f"data.codec.weights: {cfg.weights!r} holds no readable Mimi config ({err}); point it at "
                          "local Mimi weights (transformers format)") from None
    which = f"Mimi ({cfg.weights})" if cfg.weights else "Mimi"
    check(vocab.speech_codebook_size == config.codebook_size, "model.vocab.speech_codebook_size",
          f"{which} has {config.codebook_size} codes per codebook; set model.vocab.speech_codebook_size="
          f"{config.codebook_size}, got {vocab.speech_codebook_size}")
    check(1 <= vocab.n_codebooks <= config.num_quantizers, "model.vocab.n_codebooks",
          f"{which} has {config.num_quantizers} codebooks; set model.vocab.n_codebooks between 1 and "
          f"{config.num_quantizers}, got {vocab.n_codebooks}")


class LazyCodec:
    """A zero-argument callable giving the codec of `cfg` (MimiCodec, or KMeansUnitCodec for kind kmeans), built on
    the first call (in the process that needs it: a loader worker, an evaluation)."""

    def __init__(self, cfg: CodecConfig, n_codebooks: int):
        self.cfg, self.n_codebooks = cfg, n_codebooks
        self._codec: MimiCodec | KMeansUnitCodec | None = None

    def __call__(self) -> MimiCodec | KMeansUnitCodec:
        if self._codec is None:
            if self.cfg.kind == "kmeans":
                self._codec = KMeansUnitCodec(self.cfg.weights)
            else:
                self._codec = MimiCodec(self.cfg, self.n_codebooks)
        return self._codec
