"""Corpora in: discover audio + transcripts, validate, force-align, and write training shards (`lst-train data
pack` / `data align`)."""
