"""Block geometry shared by the static builders: the 3D bounding box of each block's video tokens.

With tokens in tile order (:mod:`accel.sparse_attention.reorder`) each block is a small cube of the
(frame, row, column) grid. A pattern that keeps token pairs within a distance per axis keeps a
block pair when the gap between their boxes is within that distance on every axis, which never
drops a token pair the token-level pattern keeps.
"""

from __future__ import annotations

import math

import torch

from ..reorder import SequenceLayout

_FAR = 1 << 30


def block_boxes(
    layout: SequenceLayout, block: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lo, hi)``, int64 ``[num_blocks, 3]``: per-axis min and max coordinates of each block's video
    tokens over the whole working sequence. Blocks holding only text get an empty box (lo > hi)."""
    n_blocks = math.ceil(layout.seq_len / block)
    coords = layout.token_coords(device)
    block_of = torch.arange(layout.video_len, device=device) // block
    lo = torch.full((n_blocks, 3), _FAR, dtype=torch.int64, device=device)
    hi = torch.full((n_blocks, 3), -_FAR, dtype=torch.int64, device=device)
    index = block_of[:, None].expand(-1, 3)
    lo.scatter_reduce_(0, index, coords, reduce="amin")
    hi.scatter_reduce_(0, index, coords, reduce="amax")
    return lo, hi


def box_gaps(layout: SequenceLayout, block_m: int, block_n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """int64 ``[Mb, Nb, 3]``: per-axis gap (0 when overlapping) between query-block and key-block boxes.
    Pairs involving a text-only block get a huge gap."""
    q_lo, q_hi = block_boxes(layout, block_m, device)
    k_lo, k_hi = block_boxes(layout, block_n, device)
    gap = torch.maximum(k_lo[None, :, :] - q_hi[:, None, :], q_lo[:, None, :] - k_hi[None, :, :]).clamp_min(0)
    empty = (q_lo > q_hi).any(-1)[:, None] | (k_lo > k_hi).any(-1)[None, :]
    return torch.where(empty[..., None], torch.full_like(gap, _FAR), gap)


def num_blocks(layout: SequenceLayout, block: int) -> int:
    return math.ceil(layout.seq_len / block)
