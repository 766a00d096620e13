"""Evaluation items -> token rows, with the codec, tokenizer, markers and patcher of training.

A row is `<bos> <marker> context [<marker>] ending` (`<bos> <marker> ending` for an item without a context): an
ending in the context's modality continues its span and is patched as one span with it (exactly as training patches
a whole utterance: no short patch at the join), and one in the other modality opens a new `<t>` / `<s>` span.
Models trained with a curriculum (or mixed) patcher are evaluated with static patches; aligned models with the word
timings.
"""

from lst_train.config import PatchingConfig
from lst_train.config.patching import evaluation_patching
from lst_train.data.documents import Span, speech_tokens
from lst_train.data.pieces import Piece, render_span
from lst_train.data.patchers import KIND_SINGLE, Patcher
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.data.utterances import DecodedRecord, parse_words
from lst_train.evaluation.items import Segment
from lst_train.vocab import Vocab

# (context is speech, ending is speech) per setting.
SETTINGS = {"s2s": (True, True), "t2t": (False, False), "s2t": (True, False), "t2s": (False, True)}


def evaluation_patcher(arch: str, patching: PatchingConfig, total_steps: int) -> Patcher | None:
    """The patcher prompts of a model are cut with: none for the baseline, else config.patching's
    evaluation_patching (aligned for an aligned model, static for every other)."""
    return Patcher(evaluation_patching(patching), total_steps) if arch == "lst" else None


class PromptBuilder:
    def __init__(self, tokenizer: SpeechTextTokenizer, patcher: Patcher | None,
                 speech_cache: dict[str, Span] | None = None):
        """`patcher`: evaluation_patcher's choice (None: the baseline). `speech_cache`: audio path -> its encoded
        span; pass one dict to several builders of models that share the codec and vocabulary (e.g. the families
        of a sweep) to run Mimi once per file."""
        self.tokenizer, self.vocab, self.patcher = tokenizer, tokenizer.vocab, patcher
        self.aligned = patcher is not None and patcher.cfg.strategy == "aligned"
        self._speech: dict[str, Span] = {} if speech_cache is None else speech_cache

    def speech_span(self, segment: Segment) -> Span:
        """The segment's audio through the codec (cached per file); word timings when the item has them."""
        if segment.audio not in self._speech:
            codec = self.tokenizer.codec()
            audio = self.tokenizer.read_audio(segment.audio)
            words, times = parse_words({"text": segment.text, "words": segment.words}, len(audio) / codec.sample_rate,
                                       segment.audio) if segment.words else ([], [])
            utterance = DecodedRecord(segment.audio, words, times).utterance(codec.encode(audio), codec.frame_rate)
            self._speech[segment.audio] = Span(True, speech_tokens(utterance, 0, len(utterance.frames), self.vocab),
                                               utterance.frame_rate, utterance.word_frames)
        return self._speech[segment.audio]

    def span(self, segment: Segment, speech: bool, continues: bool = False) -> Span:
        if speech:
            return self.speech_span(segment)
        return Span(False, self.tokenizer.text.encode((" " if continues else "") + segment.text.strip()))

    def build(self, context: Segment | None, ending: Segment, setting: str) -> tuple[Piece, int]:
        """The row and the index of the ending's first token. Without a context (a pair-preference item) the row is
        `<bos> <marker> ending`, the ending in the setting's ending modality, and every ending token is scored."""
        context_speech, ending_speech = SETTINGS[setting]
        piece = Piece()
        piece.add_patch([self.vocab.bos], KIND_SINGLE)
        if context is None:
            ending_span = self.span(ending, ending_speech)
            render_span(piece, ending_span, self.vocab, self.patcher, self.aligned)
            return piece, len(piece.tokens) - len(ending_span.tokens)
        context_span = self.span(context, context_speech)
        ending_span = self.span(ending, ending_speech, continues=context_speech == ending_speech)
        if context_speech == ending_speech:
            render_span(piece, joined_span(context_span, ending_span, self.vocab), self.vocab, self.patcher,
                        self.aligned)
        else:
            render_span(piece, context_span, self.vocab, self.patcher, self.aligned)
            render_span(piece, ending_span, self.vocab, self.patcher, self.aligned)
        return piece, len(piece.tokens) - len(ending_span.tokens)


def joined_span(first: Span, second: Span, vocab: Vocab) -> Span:
    """One span of `first` then `second` (same modality): patched as one, as training patches a whole utterance, so
    a static grid runs on across the join and no patch closes early at it."""
    shift = len(first.tokens) // vocab.n_codebooks
    words = first.word_frames + [(start + shift, end + shift) for start, end in second.word_frames]
    return Span(first.speech, first.tokens + second.tokens, first.frame_rate or second.frame_rate, words)
