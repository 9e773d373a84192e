"""Block-sparse attention for video diffusion transformers.

    import accel
    accel.apply(pipe, accel.SparseAttentionConfig(pattern="dynamic", tau=0.9))

Masks (:class:`BlockSparseMask`) are built in pure torch by :mod:`.builders` on tokens reordered
into 3D tiles (:mod:`.reorder`); kernels live in :mod:`accel.kernels`. See docs/sparse_attention.md.
"""

from __future__ import annotations

from typing import Any

from ..kernels.block_mask import BlockSparseMask
from .builders import HeadPatterns, PatternSpec, dynamic_mask, pattern_mask
from .builders.combine import dense_text, force_diagonal, union
from .config import SparseAttentionConfig
from .plugin import SparseAttentionPlugin
from .reorder import SequenceLayout, tile_permutation, to_model_order, to_working_order


def apply_sparse_attention(target: Any, config: SparseAttentionConfig | None = None, **kwargs: Any) -> Any:
    """``accel.apply(target, config or SparseAttentionConfig())``; ``kwargs`` go to ``accel.apply``."""
    from ..api import apply

    return apply(target, config if config is not None else SparseAttentionConfig(), **kwargs)


__all__ = [
    "BlockSparseMask",
    "PatternSpec",
    "SequenceLayout",
    "SparseAttentionConfig",
    "SparseAttentionPlugin",
    "HeadPatterns",
    "apply_sparse_attention",
    "dense_text",
    "dynamic_mask",
    "force_diagonal",
    "pattern_mask",
    "tile_permutation",
    "to_model_order",
    "to_working_order",
    "union",
]
