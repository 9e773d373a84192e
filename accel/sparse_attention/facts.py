"""The sparse-attention plugin's facts (:class:`accel.facts.PluginFacts`): its demo panel and ``accel
tune``'s genes.

The ``pattern`` gene offers, besides the dynamic masks (Video-BLADE's ASA, arXiv 2508.10774),
Generalized Neighborhood Attention (GNA, Hassani et al., arXiv 2504.16922) in its perfectly
block-sparse configurations: stride = tile, block size = prod(tile), so that each query tile sees
whole key tiles. A choice is ``"neighborhood:KFxKHxKW/SFxSHxSW"`` (kernel / stride per frames, rows,
columns). Whether it is block-exact depends on the video token grid, so :func:`fits_grid` keeps a
neighbourhood choice only where the tuned call's grid makes it exact (and none when the grid is
unknown): the search never spends an evaluation on a setting that would run at token granularity,
and never on one whose kernel exceeds the grid, which the plugin refuses.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError
from ..facts import Field, Gene, PluginFacts
from .builders.neighborhood import neighborhood_blocks
from .config import SparseAttentionConfig
from .reorder import SequenceLayout

#: ``accel tune``'s neighbourhood choices: kernel / stride (= tile; block = prod(tile)). Stride (1, 4, 4)
#: and block 16 suit short grids such as ``wan-moving-shapes`` (5 x 8 x 8 tokens), stride (4, 4, 4) and
#: block 64 the GPU kernels' favourite block on grids divisible by 4.
NEIGHBORHOOD_CHOICES = (
    "neighborhood:3x4x4/1x4x4",
    "neighborhood:3x4x8/1x4x4",
    "neighborhood:5x4x8/1x4x4",
    "neighborhood:3x12x12/1x4x4",
    "neighborhood:4x12x12/4x4x4",
    "neighborhood:12x12x12/4x4x4",
)


def _triple(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.split("x"))
    if len(values) != 3:
        raise ConfigError(f"a neighbourhood gene needs three sizes per part, got {text!r}")
    return values  # type: ignore[return-value]


def neighborhood_fields(choice: str) -> dict[str, Any]:
    """SparseAttentionConfig fields of a ``"neighborhood:KxKxK/SxSxS"`` gene choice."""
    name, _, spec = choice.partition(":")
    if name != "neighborhood" or spec.count("/") != 1:
        raise ConfigError(f"not a neighbourhood gene choice: {choice!r} (expected 'neighborhood:3x4x8/1x4x4')")
    kernel, stride = (_triple(part) for part in spec.split("/"))
    return dict(pattern="neighborhood", kernel_size=kernel, stride=stride, tile=stride, block_size=math.prod(stride))


def build(knobs: dict[str, Any], steps: int) -> SparseAttentionConfig:
    """The config of a genome's sparse-attention knobs (tau and max_keep only matter to the dynamic pattern)."""
    pattern = knobs.get("pattern", "dynamic")
    if pattern == "dynamic":
        return SparseAttentionConfig(
            tau=knobs["tau"], max_keep=knobs["max_keep"], dense_warmup_fraction=knobs["dense_warmup"]
        )
    return SparseAttentionConfig(dense_warmup_fraction=knobs["dense_warmup"], **neighborhood_fields(pattern))


def fits_grid(config: SparseAttentionConfig, grid: tuple[int, int, int] | None) -> bool:
    """Whether ``config`` is worth searching on a video token grid: any non-neighbourhood config; a
    neighbourhood one only where its block mask is exact there (a known grid, divisible by the tile,
    every kernel within its axis and its windows on tile boundaries)."""
    if config.pattern != "neighborhood":
        return True
    if grid is None:
        return False
    layout = SequenceLayout(*grid, tile=config.tile)
    try:
        _, exact = neighborhood_blocks(layout, config.block_size, config.kernel_size, config.stride, config.dilation)
    except ConfigError:
        return False
    return exact


_PRESET = dict(kernel_size=(3, 9, 9), stride=(1, 1, 1), dilation=(1, 1, 1), tile=(4, 4, 4))

FACTS = PluginFacts(
    key="sparse_attention",
    title="Sparse attention (video)",
    blurb=(
        "Video DiTs (Wan, CogVideoX, HunyuanVideo, LTX): block-sparse self-attention chosen per head and step "
        "(dynamic), a static window, or a strided neighbourhood (GNA: kernel, stride, dilation per frames, rows, "
        "columns; block-sparse when stride = tile and block size = tile volume)."
    ),
    fields=(
        Field("pattern", "pattern", "choice", choices=("dynamic", "window", "neighborhood")),
        Field("tau", "kept score mass tau", "float", 0.05, 1.0, 0.01),
        Field("max_keep", "max kept key blocks", "float", 0.05, 1.0, 0.05),
        Field("block_size", "block size (tokens)", "choice", choices=(4, 8, 16, 32, 64, 128)),
        Field("dense_warmup_fraction", "dense warm-up fraction", "float", 0.0, 1.0, 0.05),
        Field("mask_reuse_steps", "mask reuse steps", "int", 1, 10, 1),
        Field(
            "kernel_size",
            "neighbourhood kernel (frames, rows, columns)",
            "ints",
            1,
            64,
            info="neighborhood: keys each query sees per axis; at most the video token grid",
        ),
        Field("stride", "neighbourhood stride", "ints", 1, 64, info="neighborhood: at most the kernel per axis"),
        Field("dilation", "neighbourhood dilation", "ints", 1, 16, info="neighborhood: kernel x dilation <= grid"),
        Field("tile", "3D tile (frames, rows, columns)", "ints", 1, 16, info="token reordering; = stride for GNA"),
    ),
    presets={
        "safe": dict(
            pattern="dynamic",
            tau=0.95,
            max_keep=0.75,
            block_size=64,
            dense_warmup_fraction=0.3,
            mask_reuse_steps=1,
            **_PRESET,
        ),
        "balanced": dict(
            pattern="dynamic",
            tau=0.9,
            max_keep=0.5,
            block_size=64,
            dense_warmup_fraction=0.2,
            mask_reuse_steps=1,
            **_PRESET,
        ),
        "fast": dict(
            pattern="dynamic",
            tau=0.8,
            max_keep=0.3,
            block_size=64,
            dense_warmup_fraction=0.1,
            mask_reuse_steps=2,
            **_PRESET,
        ),
    },
    identity=dict(
        pattern="dynamic",
        tau=1.0,
        max_keep=1.0,
        block_size=64,
        dense_warmup_fraction=1.0,
        mask_reuse_steps=1,
        **_PRESET,
    ),
    genes=(
        Gene("tau", (0.9, 0.7, 0.5)),
        Gene("max_keep", (0.5, 0.25)),
        Gene("dense_warmup", (0.2, 0.1, 0.4)),
        Gene("pattern", ("dynamic", *NEIGHBORHOOD_CHOICES)),
    ),
    build=build,
    fits=lambda config, target: fits_grid(config, target.grid),
    sweep={"wan-moving-shapes": [{"type": "SparseAttentionConfig"}]},
    order=3,
)
