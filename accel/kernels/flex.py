"""Block-sparse attention through PyTorch FlexAttention, compiled (CPU and GPU).

The mask is exported with :meth:`BlockSparseMask.to_flex`, whose ``mask_mod`` reads the block table
(eager FlexAttention ignores block indices, so an index-only mask would silently run dense).
``torch.compile(flex_attention)`` is created once per process and cached; Inductor then compiles
one kernel per input shape (about 10 s on CPU the first time, milliseconds afterwards).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..sparse_attention.mask import BlockSparseMask

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


def flex_block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockSparseMask,
                                scale: float | None = None, compiled: bool = True) -> torch.Tensor:
    """``[B,H,Nq,D]`` attention of ``q`` over ``k``/``v`` restricted to ``mask``'s active blocks.

    Rows with no active key give zeros. ``compiled=False`` runs eager FlexAttention, which is
    correct but computes every block.
    """
    b, h = q.shape[:2]
    block_mask = mask.expand(b, h).to(q.device).to_flex(b, h)
    kernel_options = None
    if q.is_cuda:
        # the GPU kernel's tiles must divide the mask blocks
        kernel_options = {"BLOCK_M": min(mask.block_m, 128), "BLOCK_N": min(mask.block_n, 128)}
    if compiled:
        fn = compiled_flex_attention()
    else:
        from torch.nn.attention.flex_attention import flex_attention as fn
    return fn(q, k, v, block_mask=block_mask, scale=scale, kernel_options=kernel_options)
