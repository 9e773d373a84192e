"""Mask builders, pure torch: dynamic (content-aware), static patterns, searched per-head patterns, and combinations.

Head patterns are searched offline by :mod:`accel.tuning.head_pattern_search`; this package only applies them.

Every builder works on tokens in the *working order* of a :class:`~accel.sparse_attention.reorder.SequenceLayout`
(video tokens in 3D-tile order, then text) and returns a boolean block map or a
:class:`~accel.kernels.block_mask.BlockSparseMask`.
"""

from .diagonal import band_blocks, multi_diagonal_blocks
from .dynamic import SCORE_METHODS, block_scores, dynamic_mask, keep_by_threshold, mean_pool, sample_tokens
from .geometry import block_boxes, box_gaps
from .head_patterns import HeadPatterns
from .patterns import PATTERN_ARITY, PatternSpec, finalize, pattern_blocks, pattern_mask
from .stripe import stripe_blocks
from .window import temporal_blocks, window_blocks

__all__ = [
    "PATTERN_ARITY",
    "PatternSpec",
    "SCORE_METHODS",
    "HeadPatterns",
    "band_blocks",
    "block_boxes",
    "block_scores",
    "box_gaps",
    "dynamic_mask",
    "finalize",
    "keep_by_threshold",
    "mean_pool",
    "multi_diagonal_blocks",
    "pattern_blocks",
    "pattern_mask",
    "sample_tokens",
    "stripe_blocks",
    "temporal_blocks",
    "window_blocks",
]
