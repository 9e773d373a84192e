"""Block-sparse attention through PyTorch FlexAttention, compiled (CPU and GPU).

The mask is exported with :func:`to_flex_block_mask`, whose ``mask_mod`` reads the block table
(eager FlexAttention ignores block indices, so an index-only mask would silently run dense).
``torch.compile(flex_attention)`` is created once per process and cached; Inductor then compiles
one kernel per input shape (about 10 s on CPU the first time, milliseconds afterwards).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .block_mask import BlockSparseMask

_COMPILED: dict[str, Callable[..., Any]] = {}


def flex_available() -> bool:
    """Whether this torch has FlexAttention."""
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def compiled_flex_attention() -> Callable[..., Any]:
    """The process-wide ``torch.compile(flex_attention)`` (created on first use)."""
    fn = _COMPILED.get("flex")
    if fn is None:
        from torch.nn.attention.flex_attention import flex_attention

        fn = torch.compile(flex_attention, dynamic=False)
        _COMPILED["flex"] = fn
    return fn


def to_flex_block_mask(mask: BlockSparseMask, batch: int | None = None, heads: int | None = None) -> Any:
    """A FlexAttention ``BlockMask`` with a ``mask_mod`` that reads ``mask``'s block table.

    Eager (and CPU) FlexAttention ignores a ``BlockMask``'s block indices and applies only its
    ``mask_mod``; an index-only mask would silently compute dense attention. The ``mask_mod``
    here is exact on its own, and the index lists (full interior blocks, partial tail blocks)
    let compiled FlexAttention skip inactive blocks.
    """
    from torch.nn.attention.flex_attention import BlockMask

    expanded = mask.expand(batch or mask.batch, heads or mask.heads)
    blocks = expanded.to_block_bool()
    tail = torch.zeros(expanded.num_q_blocks, expanded.num_kv_blocks, dtype=torch.bool, device=mask.device)
    if mask.q_len % mask.block_m:
        tail[-1, :] = True
    if mask.kv_len % mask.block_n:
        tail[:, -1] = True
    partial, full = blocks & tail, blocks & ~tail
    bm, bn = mask.block_m, mask.block_n
    table = blocks

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return table[b, h, q_idx // bm, kv_idx // bn]

    p_num, p_idx = _counts_and_indices(partial)
    f_num, f_idx = _counts_and_indices(full)
    return BlockMask.from_kv_blocks(
        p_num, p_idx, f_num, f_idx, BLOCK_SIZE=(bm, bn), mask_mod=mask_mod, seq_lengths=(mask.q_len, mask.kv_len)
    )


def _counts_and_indices(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    num = blocks.sum(-1, dtype=torch.int32)
    idx = torch.argsort((~blocks).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    return num.contiguous(), idx.contiguous()


def flex_block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: BlockSparseMask,
    scale: float | None = None,
    compiled: bool = True,
) -> torch.Tensor:
    """``[B,H,Nq,D]`` attention of ``q`` over ``k``/``v`` restricted to ``mask``'s active blocks.

    Rows with no active key give zeros. ``compiled=False`` runs eager FlexAttention, which is
    correct but computes every block.
    """
    b, h = q.shape[:2]
    block_mask = to_flex_block_mask(mask.expand(b, h).to(q.device), b, h)
    kernel_options = None
    if q.is_cuda:
        # the GPU kernel's tiles must divide the mask blocks
        kernel_options = {"BLOCK_M": min(mask.block_m, 128), "BLOCK_N": min(mask.block_n, 128)}
    if compiled:
        fn = compiled_flex_attention()
    else:
        from torch.nn.attention.flex_attention import flex_attention as fn
    return fn(q, k, v, block_mask=block_mask, scale=scale, kernel_options=kernel_options)
