"""lst_kernels: patch pooling/unpooling ops for Latent Speech-Text Transformers.

A leaf package: it never imports lst_train. The three ops (`dispatch`) run the Triton kernels (`triton_kernels`,
as torch.library custom ops in `ops`) on CUDA and the pure-torch `reference` on CPU (also the kernels' oracle);
each call may name its backend (`backend=`), and `set_backend` sets the process default.
"""

from lst_kernels import reference
from lst_kernels.dispatch import range_cross_attention, segment_cross_attention, segment_pool
from lst_kernels.ops import get_backend, resolve_backend, set_backend

__all__ = ["get_backend", "range_cross_attention", "reference", "resolve_backend", "segment_cross_attention",
           "segment_pool", "set_backend"]
