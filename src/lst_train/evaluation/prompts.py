"""Evaluation items -> token rows, with the codec, tokenizer, markers and patcher of training.

A row is `<bos> <marker> context [<marker>] ending`: the ending keeps the context's span when the modality is the
same (a continuation; its own patches) and opens a new `<t>` / `<s>` span otherwise. Models trained with a
curriculum (or mixed) patcher are evaluated with static patches; aligned models with the word timings.
"""

import dataclasses
from typing import Callable

from lst_train.config import Config
from lst_train.data.audio import decode_audio
from lst_train.data.documents import Span, speech_tokens
from lst_train.data.packing import Piece, render_span
from lst_train.data.patchers import KIND_SINGLE, Patcher
from lst_train.data.text_tokenizer import TextTokenizer
from lst_train.data.utterances import DecodedRecord, parse_words
from lst_train.evaluation.items import Segment
from lst_train.vocab import Vocab

# (context is speech, ending is speech) per setting.
SETTINGS = {"s2s": (True, True), "t2t": (False, False), "s2t": (True, False), "t2s": (False, True)}


class PromptBuilder:
    def __init__(self, cfg: Config, vocab: Vocab, tokenizer: TextTokenizer, get_codec: Callable,
                 speech_cache: dict[str, Span] | None = None):
        """`speech_cache`: audio path -> its encoded span; pass one dict to several builders of models that share
        the codec and vocabulary (e.g. the families of a sweep) to run Mimi once per file."""
        self.cfg, self.vocab, self.tokenizer, self.get_codec = cfg, vocab, tokenizer, get_codec
        self.aligned = cfg.patching.strategy == "aligned"
        patching = dataclasses.replace(cfg.patching, strategy="aligned" if self.aligned else "static")
        self.patcher = Patcher(patching, cfg.training.steps) if cfg.model.arch == "lst" else None
        self._speech: dict[str, Span] = {} if speech_cache is None else speech_cache

    def speech_span(self, segment: Segment) -> Span:
        """The segment's audio through the codec (cached per file); word timings when the item has them."""
        if segment.audio not in self._speech:
            codec = self.get_codec()
            with open(segment.audio, "rb") as f:
                audio = decode_audio(f.read(), segment.audio, codec.sample_rate, self.cfg.data.codec.max_seconds,
                                     self.cfg.data.codec.silence_threshold)
            words, times = parse_words({"text": segment.text, "words": segment.words}, len(audio) / codec.sample_rate,
                                       segment.audio) if segment.words else ([], [])
            utterance = DecodedRecord(segment.audio, words, times).utterance(codec.encode(audio), codec.frame_rate)
            self._speech[segment.audio] = Span(True, speech_tokens(utterance, 0, len(utterance.frames), self.vocab),
                                               utterance.frame_rate, utterance.word_frames)
        return self._speech[segment.audio]

    def span(self, segment: Segment, speech: bool, continues: bool = False) -> Span:
        if speech:
            return self.speech_span(segment)
        return Span(False, self.tokenizer.encode((" " if continues else "") + segment.text.strip()))

    def build(self, context: Segment, ending: Segment, setting: str) -> tuple[Piece, int]:
        """The row and the index of the ending's first token."""
        context_speech, ending_speech = SETTINGS[setting]
        same = context_speech == ending_speech
        piece = Piece()
        piece.add_patch([self.vocab.bos], KIND_SINGLE)
        render_span(piece, self.span(context, context_speech), self.vocab, self.patcher, self.aligned)
        if not same:
            piece.add_patch([self.vocab.speech_marker if ending_speech else self.vocab.text_marker], KIND_SINGLE)
        start = len(piece.tokens)
        render_span(piece, self.span(ending, ending_speech, continues=same), self.vocab, self.patcher, self.aligned,
                    marker=False)
        return piece, start
