"""Sparse-vDiT's diagonal and multi-diagonal patterns (arXiv 2506.03065).

* Diagonal: local attention, a band of ``width`` blocks around the diagonal of the working order.
* Multi-diagonal: a query attends to keys at (about) the same spatial position in *every* frame;
  in raster order these are diagonals at offsets of k x frame_size, here kept as the block pairs
  whose row/column boxes come within ``radius = (rows, columns)``.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError
from ..reorder import SequenceLayout
from .combine import diagonal_blocks
from .geometry import box_gaps, num_blocks


def band_blocks(
    layout: SequenceLayout, block_m: int, block_n: int, width: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Bool ``[Mb, Nb]``: the diagonal band of ``width`` blocks on each side."""
    if width < 0:
        raise ConfigError(f"diagonal width must be >= 0 blocks, got {width}")
    return diagonal_blocks(num_blocks(layout, block_m), num_blocks(layout, block_n), block_m, block_n, width, device)


def multi_diagonal_blocks(
    layout: SequenceLayout, block_m: int, block_n: int, radius: tuple[int, int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Bool ``[Mb, Nb]``: block pairs within ``radius`` (rows, columns) spatially, in any frame."""
    if len(radius) != 2 or any(r < 0 for r in radius):
        raise ConfigError(f"multi-diagonal radius must be two non-negative integers (rows, columns), got {radius!r}")
    gap = box_gaps(layout, block_m, block_n, device)
    return (gap[..., 1] <= radius[0]) & (gap[..., 2] <= radius[1])
