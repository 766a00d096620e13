"""Text and speech to vocabulary ids, as one object: the text BPE, the codec (built on first use) and the audio
limits of the data section. Built once per process from the recipe and handed to whatever tokenizes: the loader,
evaluation prompts, generation."""

import numpy as np

from lst_train.config.data import CodecConfig, DataConfig
from lst_train.data.audio import decode_audio
from lst_train.data.speech_codec import LazyCodec
from lst_train.data.text_tokenizer import TextTokenizer
from lst_train.vocab import Vocab


class SpeechTextTokenizer:
    def __init__(self, vocab: Vocab, text: TextTokenizer, codec_cfg: CodecConfig):
        self.vocab = vocab
        self.text = text
        """The text BPE (tiktoken ranks of data.tokenizer)."""
        self.codec_cfg = codec_cfg
        self.codec = LazyCodec(codec_cfg, vocab.n_codebooks)
        """A zero-argument callable giving the codec (Mimi or k-means units), built on its first call."""

    @classmethod
    def from_config(cls, data: DataConfig, vocab: Vocab) -> "SpeechTextTokenizer":
        return cls(vocab, TextTokenizer.from_file(data.tokenizer), data.codec)

    def read_audio(self, path: str) -> np.ndarray:
        """The file's audio, mono at the codec's rate, within data.codec's limits (raises SkipSample)."""
        with open(path, "rb") as f:
            data = f.read()
        return decode_audio(data, path, self.codec().sample_rate, self.codec_cfg.max_seconds,
                            self.codec_cfg.silence_threshold)
