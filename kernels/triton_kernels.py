"""The Triton backend of lst_kernels.ops: the six launchers (forward and backward of the three patch ops), from
triton_segment_ops (pooling) and triton_range_attention (unpooling). ops looks them up here at each call."""

from lst_kernels.triton_range_attention import range_cross_attention_bwd, range_cross_attention_fwd
from lst_kernels.triton_segment_ops import (segment_cross_attention_bwd, segment_cross_attention_fwd,
                                            segment_pool_bwd, segment_pool_fwd)

__all__ = ["segment_pool_fwd", "segment_pool_bwd", "segment_cross_attention_fwd", "segment_cross_attention_bwd",
           "range_cross_attention_fwd", "range_cross_attention_bwd"]
