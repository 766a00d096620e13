"""lst_kernels: patch pooling/unpooling ops for Latent Speech-Text Transformers.

A leaf package: it never imports lst_train. `reference` holds the pure-torch ops (the CPU path and the oracle
for the Triton kernels).
"""

from lst_kernels.reference import range_cross_attention, segment_cross_attention, segment_pool

__all__ = ["range_cross_attention", "segment_cross_attention", "segment_pool"]
