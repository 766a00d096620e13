"""Speech recognition by the language model itself: the greedy transcript of each held-out utterance, scored by
word and character error rate (jiwer). Meaningful after ASR fine-tuning (`sequence: asr` sources), and then the same
for every family: each model reads `<bos> <s> speech <t>` and writes text until `<eos>`.

The speech prompt is patched as generation patches it (static, or entropy): the word timings an aligned model
trains on come from the transcript, which a recogniser must not read.
"""

from dataclasses import asdict, dataclass

import jiwer
import torch

from lst_train.config import PatchingConfig
from lst_train.data.documents import Document
from lst_train.data.text_tokenizer import TextTokenizer
from lst_train.generation.generator import SamplingConfig, generate

COUNTS = ("utterances", "unfinished", "word_errors", "words", "char_errors", "chars")


@dataclass
class Transcript:
    key: str
    reference: str
    hypothesis: str
    finished: bool
    """Whether the model ended the transcript (<eos>) before `max_tokens`."""


def transcribe(model, document: Document, tokenizer: TextTokenizer, patching: PatchingConfig,
               max_tokens: int) -> Transcript:
    """Greedy transcript of an ASR document's speech (its first span; the second is the reference)."""
    vocab = model.vocab
    speech, text = document.spans
    prompt = [vocab.bos, vocab.speech_marker, *speech.tokens, vocab.text_marker]
    result = generate(model, prompt, patching, SamplingConfig(max_tokens=max_tokens, temperature=0.0), "text",
                      tokenizer.n_vocab)
    finished = bool(result.tokens) and result.tokens[-1] == vocab.eos
    hypothesis = result.tokens[:-1] if finished else result.tokens
    return Transcript(document.key, tokenizer.decode(text.tokens).strip(), tokenizer.decode(hypothesis).strip(),
                      finished)


def error_counts(transcripts: list[Transcript]) -> dict:
    """Word and character edit distances (substitutions + deletions + insertions) and reference lengths, summed:
    counts, so that ranks' shares add up. An empty hypothesis counts every reference word as deleted."""
    counts = dict.fromkeys(COUNTS, 0)
    for t in transcripts:
        words = jiwer.process_words(t.reference, t.hypothesis)
        chars = jiwer.process_characters(t.reference, t.hypothesis)
        counts["utterances"] += 1
        counts["unfinished"] += not t.finished
        counts["word_errors"] += words.substitutions + words.deletions + words.insertions
        counts["words"] += words.substitutions + words.deletions + words.hits
        counts["char_errors"] += chars.substitutions + chars.deletions + chars.insertions
        counts["chars"] += chars.substitutions + chars.deletions + chars.hits
    return counts


def error_rates(counts: dict) -> dict:
    """The counts plus WER and CER (None without a reference word)."""
    return {**counts, "wer": counts["word_errors"] / counts["words"] if counts["words"] else None,
            "cer": counts["char_errors"] / counts["chars"] if counts["chars"] else None}


@torch.no_grad()
def transcription_eval(model, documents: list[Document], tokenizer: TextTokenizer, patching: PatchingConfig,
                       max_tokens: int, examples: int = 5) -> dict:
    """{counts, wer, cer, "examples": the first `examples` transcripts}."""
    was_training = model.training
    model.eval()
    transcripts = [transcribe(model, document, tokenizer, patching, max_tokens) for document in documents]
    model.train(was_training)
    return {**error_rates(error_counts(transcripts)), "examples": [asdict(t) for t in transcripts[:examples]]}
