"""Sampling from trained models: incremental decoding with KV caches (`lst-train generate`)."""
