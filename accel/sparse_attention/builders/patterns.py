"""Named static patterns (``"window:2,8,8"``, ``"diagonal:1"``, ...) and the finishing touches every mask gets.

A pattern spec is ``name`` or ``name:arg,arg``:

============================  ====================================================================
``dense``                     every block
``skip``                      no block: the head outputs zeros (Sparse-vDiT's skipped heads)
``window:t,h,w``              3D local window, radius in tokens per axis
``temporal:t``                keys within ``t`` frames
``diagonal:w``                diagonal band of ``w`` blocks on each side
``multi_diagonal:h,w``        same spatial neighbourhood (radius ``h``, ``w``) in every frame
``vertical_stripe:f,w``       key blocks of the first ``f`` frames for all queries + band of ``w``
============================  ====================================================================
"""

from __future__ import annotations

import dataclasses

import torch

from ...errors import ConfigError
from ...kernels.block_mask import BlockSparseMask
from ..reorder import SequenceLayout
from .combine import diagonal_blocks, text_blocks
from .diagonal import band_blocks, multi_diagonal_blocks
from .geometry import num_blocks
from .stripe import stripe_blocks
from .window import temporal_blocks, window_blocks

#: pattern name -> number of integer arguments
PATTERN_ARITY = {
    "dense": 0,
    "skip": 0,
    "window": 3,
    "temporal": 1,
    "diagonal": 1,
    "multi_diagonal": 2,
    "vertical_stripe": 2,
}


@dataclasses.dataclass(frozen=True)
class PatternSpec:
    name: str
    args: tuple[int, ...] = ()

    @classmethod
    def parse(cls, spec: str | PatternSpec) -> PatternSpec:
        if isinstance(spec, PatternSpec):
            return spec
        if not isinstance(spec, str):
            raise ConfigError(f"a pattern spec is a string such as 'window:2,8,8', got {spec!r}")
        name, _, rest = spec.strip().partition(":")
        if name not in PATTERN_ARITY:
            raise ConfigError(f"unknown pattern {name!r}; patterns: {', '.join(PATTERN_ARITY)}")
        try:
            args = tuple(int(a) for a in rest.split(",")) if rest else ()
        except ValueError:
            raise ConfigError(f"pattern {spec!r}: arguments must be integers") from None
        if len(args) != PATTERN_ARITY[name] or any(a < 0 for a in args):
            raise ConfigError(
                f"pattern {name!r} takes {PATTERN_ARITY[name]} non-negative integer argument(s), got {spec!r}"
            )
        return cls(name, args)

    def __str__(self) -> str:
        return self.name + (":" + ",".join(str(a) for a in self.args) if self.args else "")


def pattern_blocks(
    spec: str | PatternSpec, layout: SequenceLayout, block: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Bool ``[Mb, Nb]`` of one pattern over the working sequence of ``layout`` (text not yet handled)."""
    spec = PatternSpec.parse(spec)
    n = num_blocks(layout, block)
    if spec.name == "dense":
        return torch.ones(n, n, dtype=torch.bool, device=device)
    if spec.name == "skip":
        return torch.zeros(n, n, dtype=torch.bool, device=device)
    if spec.name == "window":
        return window_blocks(layout, block, block, spec.args, device)  # type: ignore[arg-type]
    if spec.name == "temporal":
        return temporal_blocks(layout, block, block, spec.args[0], device)
    if spec.name == "diagonal":
        return band_blocks(layout, block, block, spec.args[0], device)
    if spec.name == "multi_diagonal":
        return multi_diagonal_blocks(layout, block, block, spec.args, device)  # type: ignore[arg-type]
    return stripe_blocks(layout, block, block, spec.args[0], spec.args[1], device)


def finalize(
    blocks: torch.Tensor,
    layout: SequenceLayout,
    block: int,
    force_diagonal: bool = True,
    skip_heads: torch.Tensor | None = None,
) -> BlockSparseMask:
    """Turn a ``[B,H,Mb,Nb]`` (or ``[Mb,Nb]``) block map over the working sequence into the mask a
    kernel runs: diagonal blocks on (optional), text rows and columns dense, skipped heads
    (bool ``[H]``) left empty."""
    if blocks.ndim == 2:
        blocks = blocks[None, None]
    n = layout.seq_len
    if force_diagonal:
        blocks = blocks | diagonal_blocks(blocks.shape[-2], blocks.shape[-1], block, block, device=blocks.device)
    if layout.text_len:
        text = text_blocks(n, block, layout.text_len, "last").to(blocks.device)  # working order: text last
        blocks = blocks | text[:, None] | text[None, :]
    if skip_heads is not None and bool(skip_heads.any()):
        blocks = blocks & ~skip_heads.to(blocks.device)[None, :, None, None]
    return BlockSparseMask.from_block_bool(blocks, block, block, n, n)


def pattern_mask(
    specs: list[str | PatternSpec],
    layout: SequenceLayout,
    block: int,
    device: torch.device | str = "cpu",
    force_diagonal: bool = True,
) -> BlockSparseMask:
    """Mask with one pattern per head (``[1, H, Mb, Nb]``), finished by :func:`finalize`."""
    parsed = [PatternSpec.parse(s) for s in specs]
    cache: dict[PatternSpec, torch.Tensor] = {}
    per_head = []
    for spec in parsed:
        if spec not in cache:
            cache[spec] = pattern_blocks(spec, layout, block, device)
        per_head.append(cache[spec])
    blocks = torch.stack(per_head)[None]
    skip = torch.tensor([s.name == "skip" for s in parsed], device=device)
    return finalize(blocks, layout, block, force_diagonal, skip)
