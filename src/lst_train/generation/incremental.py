"""Incremental decoding of one document with KV caches, for the LST and the baseline.

LST: each new token runs through the encoder and the decoder with their caches; when a patch closes it is pooled
and takes one global step (cached too). Token t's decoder reads the latest patch whose end was decidable from
tokens <= t, as in training: its own patch once that is complete (a text token or special, a speech patch of p
frames, or an entropy patch whose last frame ends it), else the patch before. A speech patch closed early by a
text token or special was still open when its last token was decoded, and training reads the patch before it
there too, so nothing is ever recomputed: the caches equal a full forward pass over the final partition
(lst_train.data.pieces.row_partition).
"""

import torch
from torch import Tensor

from lst_train.config import PatchingConfig, PatchStrategy
from lst_train.config.patching import generation_patching
from lst_train.data.patchers import KIND_ENTROPY, KIND_STATIC, Patcher
from lst_train.model.baseline import InterleavedBaseline
from lst_train.model.layers import KVCache, RotaryEmbedding
from lst_train.model.lst import LatentSpeechTextTransformer


def _rope(position: int, stack, theta: float, device: torch.device) -> RotaryEmbedding:
    return RotaryEmbedding(torch.tensor([[position]], device=device), stack.dim // stack.n_heads, theta)


class IncrementalLST:
    """Feeds tokens one at a time (`step`) and returns the next-token logits; counts global steps."""

    def __init__(self, model: LatentSpeechTextTransformer, patcher: Patcher):
        self.model, self.cfg, self.vocab = model, model.cfg, model.vocab
        # The loader's patcher decides when a patch is complete (one rule for training and generation).
        self.patcher = patcher
        self.kind = KIND_ENTROPY if patcher.cfg.strategy == PatchStrategy.entropy else KIND_STATIC
        self.device = next(model.parameters()).device
        self.encoder_caches = [KVCache() for _ in model.encoder.layers]
        self.global_caches = [KVCache() for _ in model.global_transformer.layers]
        self.decoder_caches = [KVCache() for _ in model.decoder.layers]
        self.encoder_states: list[Tensor] = []  # [1, 1, d_local] per token
        self.global_states: list[Tensor] = []  # [k·d_local] per closed patch, projected for the decoder
        self.open_patch: list[int] = []  # positions of the tokens of the patch not yet closed
        self.last_code: int | None = None  # first-codebook code of the open patch's latest frame
        self.global_steps = 0

    @property
    def length(self) -> int:
        return len(self.encoder_states)

    @torch.no_grad()
    def step(self, token: int) -> Tensor:
        """Append `token`; -> float32 logits [V] predicting the token after it."""
        speech = self.vocab.speech_start <= token < self.vocab.speech_end
        if self.open_patch and not speech:
            self._close_patch()  # closed early: its last token read the patch before it, as in training
        position = self.length
        self.encoder_states.append(self._encode(token, position))
        self.open_patch.append(position)
        per_frame = self.vocab.n_codebooks
        if speech and (len(self.open_patch) - 1) % per_frame == 0:  # a frame's first token
            self.last_code = token - self.vocab.speech_start
        if not speech or not self.patcher.closed_early(self.kind, len(self.open_patch), per_frame, self.last_code):
            self._close_patch()
        return self._decode(position)

    def _encode(self, token: int, position: int) -> Tensor:
        encoder, stack = self.model.encoder, self.cfg.encoder
        rope = _rope(position, stack, self.cfg.rope_theta, self.device)
        h = encoder.tok_embeddings(torch.tensor([[token]], device=self.device))
        for layer, cache in zip(encoder.layers, self.encoder_caches):
            h = layer.decode(h, rope, cache, stack.window)
        return h

    def _close_patch(self) -> None:
        """Pool the open patch and take one global step with it."""
        states = torch.cat([self.encoder_states[i] for i in self.open_patch], dim=1)[0]
        lengths = torch.tensor([len(self.open_patch)], device=self.device)
        h = self.model.encoder.pooling.pool(states, lengths).reshape(1, 1, -1)
        stack = self.cfg.global_transformer
        rope = _rope(len(self.global_states), stack, self.cfg.rope_theta, self.device)
        for layer, cache in zip(self.model.global_transformer.layers, self.global_caches):
            h = layer.decode(h, rope, cache, stack.window)
        self.global_states.append(self.model.decoder.global_projection(h[0, 0]))
        self.open_patch = []
        self.global_steps += 1

    def _decode(self, position: int) -> Tensor:
        """The decoder for the newest token, at `position`."""
        last = len(self.global_states) - 1
        first = max(last - self.cfg.unpool_window + 1, 0)
        visible = torch.stack(self.global_states[first: last + 1])
        index = torch.tensor([0, last - first], device=self.device)
        decoder, stack = self.model.decoder, self.cfg.decoder
        rope = _rope(position, stack, self.cfg.rope_theta, self.device)
        h = self.encoder_states[position]
        for layer, cache in zip(decoder.layers, self.decoder_caches):
            h = h + layer.unpooling.attend(h[0], visible, index[:1], index[1:])[None]
            h = layer.block.decode(h, rope, cache, stack.window)
        return decoder.output(decoder.norm(h)).float()[0, 0]


class IncrementalBaseline:
    """The baseline's incremental decoder: one global step per token."""

    def __init__(self, model: InterleavedBaseline):
        self.model, self.cfg, self.vocab = model, model.cfg, model.vocab
        self.device = next(model.parameters()).device
        self.caches = [KVCache() for _ in model.global_transformer.layers]
        self.length = 0
        self.global_steps = 0

    @torch.no_grad()
    def step(self, token: int) -> Tensor:
        stack = self.cfg.global_transformer
        rope = _rope(self.length, stack, self.cfg.rope_theta, self.device)
        h = self.model.tok_embeddings(torch.tensor([[token]], device=self.device))
        for layer, cache in zip(self.model.global_transformer.layers, self.caches):
            h = layer.decode(h, rope, cache, stack.window)
        self.length += 1
        self.global_steps += 1
        return self.model.output(self.model.norm(h)).float()[0, 0]


def incremental_decoder(model, patching: PatchingConfig):
    """The incremental decoder for `model` (LST: patched as generation_patching says for its `patching`)."""
    if isinstance(model, LatentSpeechTextTransformer):
        return IncrementalLST(model, Patcher(generation_patching(patching), total_steps=1))
    return IncrementalBaseline(model)
