"""Combining and editing block-sparse masks: union, forced diagonal, dense text rows and columns.

These build on the mask format of :mod:`accel.kernels.block_mask`; the kernels never call them.
"""

from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...kernels.block_mask import BlockSparseMask
from ..reorder import TEXT_POSITIONS


def _like(mask: BlockSparseMask, blocks: torch.Tensor) -> BlockSparseMask:
    return BlockSparseMask.from_block_bool(blocks, mask.block_m, mask.block_n, mask.q_len, mask.kv_len)


def union(*masks: BlockSparseMask) -> BlockSparseMask:
    """The OR of masks with the same block sizes and lengths (batch/head dims broadcast)."""
    if not masks:
        raise ConfigError("union needs at least one mask")
    first = masks[0]
    for m in masks[1:]:
        if (m.block_m, m.block_n, m.q_len, m.kv_len) != (first.block_m, first.block_n, first.q_len, first.kv_len):
            raise ConfigError(
                "union needs masks with equal block sizes and sequence lengths, got "
                f"{(first.block_m, first.block_n, first.q_len, first.kv_len)} and "
                f"{(m.block_m, m.block_n, m.q_len, m.kv_len)}"
            )
    blocks = first.to_block_bool()
    for m in masks[1:]:
        blocks = blocks | m.to_block_bool()
    return _like(first, blocks)


def diagonal_blocks(
    num_q_blocks: int,
    num_kv_blocks: int,
    block_m: int,
    block_n: int,
    width: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Bool ``[Mb, Nb]``: key blocks whose token range overlaps the query block's, widened by ``width`` blocks."""
    q_start = torch.arange(num_q_blocks, device=device) * block_m
    first = q_start // block_n
    last = (q_start + block_m - 1) // block_n
    kv = torch.arange(num_kv_blocks, device=device)
    return (kv[None, :] >= first[:, None] - width) & (kv[None, :] <= last[:, None] + width)


def force_diagonal(mask: BlockSparseMask) -> BlockSparseMask:
    """Turn on the diagonal blocks (each query block sees the keys at its own positions)."""
    diag = diagonal_blocks(mask.num_q_blocks, mask.num_kv_blocks, mask.block_m, mask.block_n, device=mask.device)
    return _like(mask, mask.to_block_bool() | diag)


def text_blocks(length: int, block: int, text_len: int, position: str) -> torch.Tensor:
    """Bool ``[ceil(length / block)]``: blocks holding at least one text token."""
    if position not in TEXT_POSITIONS:
        raise ConfigError(f"text position must be one of {list(TEXT_POSITIONS)}, got {position!r}")
    if not 0 <= text_len <= length:
        raise ConfigError(f"text_len must be in [0, {length}], got {text_len}")
    n = math.ceil(length / block)
    out = torch.zeros(n, dtype=torch.bool)
    if text_len == 0:
        return out
    start, stop = (0, text_len) if position == "first" else (length - text_len, length)
    out[start // block : (stop - 1) // block + 1] = True
    return out


def dense_text(mask: BlockSparseMask, text_len: int, position: str = "last") -> BlockSparseMask:
    """Text tokens (``text_len`` of them, ``"first"`` or ``"last"`` in the joint sequence) attend to
    every key and every query attends to them: their query-block rows and key-block columns become
    fully active. Blocks mixing text and video tokens become dense too (exact for text, conservative
    for video)."""
    if text_len == 0:
        return mask
    if mask.q_len != mask.kv_len:
        raise ConfigError(
            f"dense_text needs a self/joint-attention mask (q_len == kv_len), got {mask.q_len} and {mask.kv_len}"
        )
    rows = text_blocks(mask.q_len, mask.block_m, text_len, position).to(mask.device)
    cols = text_blocks(mask.kv_len, mask.block_n, text_len, position).to(mask.device)
    blocks = mask.to_block_bool() | rows[:, None] | cols[None, :]
    return _like(mask, blocks)
