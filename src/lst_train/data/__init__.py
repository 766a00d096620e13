"""Streaming speech-text data: shards -> audio/units -> tokens -> interleaved documents -> patches -> packed rows."""
