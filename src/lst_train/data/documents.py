"""Utterances and text records -> documents: lists of text and speech spans, each opened by a <t> / <s> marker.

Stage 2 of the stream (DocumentBuilder), stateless. Interleaved documents alternate a random span of words as
text with the following ~half-as-long span as speech; the words map to speech frames through their timings. Span
lengths and the first modality come from the document's own RNG (seeded by its identity and epoch), so every epoch
resamples them and a resume replays them. Task documents (ASR, TTS) hold an utterance in one modality as a prompt
and the same words in the other as the answer.
"""

import random
from dataclasses import dataclass, field

from lst_train.config.data import TASK_SEQUENCES, InterleaveConfig, SourceConfig
from lst_train.data.source_reader import TextItem
from lst_train.data.text_tokenizer import TextTokenizer
from lst_train.data.utterances import Utterance
from lst_train.vocab import Vocab


@dataclass
class Span:
    """One modality run of a document, its marker not included."""

    speech: bool
    tokens: list[int]
    """Vocabulary ids: text BPE ids, or speech ids frame by frame (all codebooks of a frame together)."""
    frame_rate: float = 0.0
    """Speech: frames per second."""
    word_frames: list[tuple[int, int]] = field(default_factory=list)
    """Speech: [start, end) frame range of each word, relative to the span."""


@dataclass
class Document:
    key: str
    spans: list[Span]
    prompt_spans: int = 0
    """Leading spans that are context only: they, their markers and the next span's marker (the cue saying which
    modality answers) are not training targets."""
    whole: bool = False
    """Never split across packed rows (a task document: its answer must see its prompt)."""


def speech_tokens(utterance: Utterance, start: int, end: int, vocab: Vocab) -> list[int]:
    """Frames [start, end) of an utterance as vocabulary ids, frame-major."""
    return vocab.speech_ids(utterance.frames[start:end])


def _speech_span(utterance: Utterance, start: int, end: int, first_word: int, last_word: int,
                 vocab: Vocab) -> Span:
    words = [(min(max(s - start, 0), end - start), min(max(e - start, 0), end - start))
             for s, e in utterance.word_frames[first_word:last_word]]
    return Span(True, speech_tokens(utterance, start, end, vocab), utterance.frame_rate, words)


def interleaved_document(utterance: Utterance, tokenizer: TextTokenizer, vocab: Vocab, cfg: InterleaveConfig,
                         rng: random.Random) -> Document:
    """Alternate text spans of min..max words with speech spans of ~`speech_to_text_words` × as many words."""
    words, n_words, n_frames = utterance.words, len(utterance.words), len(utterance.frames)
    spans: list[Span] = []
    speech = rng.random() < 0.5
    text_words = rng.randint(cfg.min_text_words, cfg.max_text_words)
    i = 0
    while i < n_words:
        if speech:
            j = min(n_words, i + max(1, round(text_words * cfg.speech_to_text_words)))
            start = 0 if i == 0 else utterance.word_frames[i][0]
            end = n_frames if j == n_words else utterance.word_frames[j][0]
            if end > start:  # words shorter than a frame can leave a span without audio: drop it
                spans.append(_speech_span(utterance, start, end, i, j, vocab))
        else:
            text_words = rng.randint(cfg.min_text_words, cfg.max_text_words)
            j = min(n_words, i + text_words)
            spans.append(Span(False, tokenizer.encode((" " if i else "") + " ".join(words[i:j]))))
        i = j
        speech = not speech
    return Document(utterance.key, spans)


def speech_document(utterance: Utterance, vocab: Vocab) -> Document:
    """The whole utterance as one speech span."""
    return Document(utterance.key, [_speech_span(utterance, 0, len(utterance.frames), 0, len(utterance.words),
                                                 vocab)])


def text_document(key: str, text: str, tokenizer: TextTokenizer) -> Document:
    return Document(key, [Span(False, tokenizer.encode(text))])


def task_document(utterance: Utterance, tokenizer: TextTokenizer, vocab: Vocab, task: str,
                  prompt_loss: bool) -> Document:
    """'asr': the utterance's speech, then its transcript; 'tts': the transcript, then the speech. The first span is
    the prompt (not a target unless `prompt_loss`)."""
    speech = speech_document(utterance, vocab).spans[0]
    text = Span(False, tokenizer.encode(" ".join(utterance.words)))
    return Document(utterance.key, [speech, text] if task == "asr" else [text, speech], 0 if prompt_loss else 1,
                    whole=True)


class DocumentBuilder:
    """A source's item -> its Document, by the source's sequence type: 'text', 'speech', 'interleaved', 'asr' or
    'tts'."""

    def __init__(self, tokenizer: TextTokenizer, vocab: Vocab, interleave: InterleaveConfig, seed: int):
        self.tokenizer, self.vocab = tokenizer, vocab
        self.interleave, self.seed = interleave, seed

    def build(self, source: SourceConfig, identity: str, item: TextItem | Utterance) -> Document:
        sequence_kind = source.sequence_kind
        if sequence_kind == "text":
            return text_document(item.key, item.text, self.tokenizer)
        if sequence_kind == "speech":
            return speech_document(item, self.vocab)
        if sequence_kind in TASK_SEQUENCES:
            return task_document(item, self.tokenizer, self.vocab, sequence_kind, source.prompt_loss)
        rng = random.Random(f"{self.seed}|doc|{identity}")
        return interleaved_document(item, self.tokenizer, self.vocab, self.interleave, rng)
