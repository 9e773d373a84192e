"""Sparse-vDiT's vertical-stripe pattern (arXiv 2506.03065): a few key columns seen by every query.

The global columns are the key blocks of the first ``frames`` frames (an attention sink, as in
SVG and Radial Attention), plus a diagonal band of ``width`` blocks for local detail.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError
from ..reorder import SequenceLayout
from .diagonal import band_blocks
from .geometry import block_boxes


def stripe_blocks(
    layout: SequenceLayout,
    block_m: int,
    block_n: int,
    frames: int = 1,
    width: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Bool ``[Mb, Nb]``: key blocks with a token in the first ``frames`` frames, for every query
    block, OR the diagonal band of ``width`` blocks."""
    if frames < 0:
        raise ConfigError(f"vertical stripe needs frames >= 0, got {frames}")
    k_lo, k_hi = block_boxes(layout, block_n, device)
    columns = (k_lo[:, 0] < frames) & (k_lo[:, 0] <= k_hi[:, 0])
    band = band_blocks(layout, block_m, block_n, width, device)
    return band | columns[None, :]
