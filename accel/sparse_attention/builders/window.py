"""Static local patterns over the (frame, row, column) grid.

* 3D local window (Sliding Tile Attention, arXiv 2502.04507; GNA, arXiv 2504.16922): a query
  attends to keys within ``radius = (frames, rows, columns)`` tokens on each axis; with tile-ordered
  tokens the kept blocks are exactly the tiles whose boxes come that close.
* Temporal band (Radial Attention's dense near-frame band; SVG's spatial heads): keys within
  ``frames`` frames of the query, anywhere in those frames.
"""

from __future__ import annotations

import torch

from ...errors import ConfigError
from ..reorder import SequenceLayout
from .geometry import box_gaps


def window_blocks(
    layout: SequenceLayout,
    block_m: int,
    block_n: int,
    radius: tuple[int, int, int],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Bool ``[Mb, Nb]``: block pairs holding a token pair within ``radius`` (t, h, w) on every axis."""
    if len(radius) != 3 or any(r < 0 for r in radius):
        raise ConfigError(f"window radius must be three non-negative integers (frames, rows, columns), got {radius!r}")
    gap = box_gaps(layout, block_m, block_n, device)
    limit = torch.tensor(radius, device=gap.device)
    return (gap <= limit).all(-1)


def temporal_blocks(
    layout: SequenceLayout, block_m: int, block_n: int, frames: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Bool ``[Mb, Nb]``: block pairs holding a token pair at most ``frames`` frames apart."""
    if frames < 0:
        raise ConfigError(f"temporal band must be >= 0 frames, got {frames}")
    gap = box_gaps(layout, block_m, block_n, device)
    return gap[..., 0] <= frames
