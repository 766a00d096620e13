"""Streaming speech-text data: shards -> audio/units -> tokens -> interleaved documents -> patches -> packed rows.

The loader is `lst_train.data.dataset.build_dataloader(LoaderSpec)`; its stages are listed in lst_train.data.stream.
"""
