"""lst_train: pretraining Latent Speech-Text Transformers (and the interleaved baseline) on FSDP2."""

__version__ = "0.1.0"
