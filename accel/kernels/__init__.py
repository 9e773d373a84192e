"""Attention kernels: block-sparse attention with Triton, FlexAttention and PyTorch backends.

``block_sparse_attention(q, k, v, mask, backend="auto")`` picks one (see :mod:`.dispatch`).
Triton is imported only when the Triton backend is used.
"""

from .dispatch import BACKENDS, BackendUnavailableError, backend_status, block_sparse_attention
from .reference import dense_reference, gather_block_sparse

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "backend_status",
    "block_sparse_attention",
    "dense_reference",
    "gather_block_sparse",
]
