"""Strided, dilated 3D neighbourhood attention (Generalized Neighborhood Attention, Hassani et al.,
arXiv 2504.16922; NATTEN's semantics).

Per axis of length L, with kernel K, stride s and dilation d: positions split into d dilation groups
(``x mod d``); inside a group, queries form stride groups of s consecutive members, and every query of
a stride group sees the K group members around the group's leader (its centre member, the right one
for even s), the window shifted inward at the borders so that it always holds K keys. A token pair is
kept when every axis keeps it. With tokens in tile order and tiles of the stride's shape, each block
pair is either wholly kept or wholly dropped in GNA's perfectly block-sparse configurations; the block
map says whether it is exact.
"""

from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ..reorder import SequenceLayout

Triple = tuple[int, int, int]


def axis_neighbors(length: int, kernel: int, stride: int = 1, dilation: int = 1) -> torch.Tensor:
    """Bool ``[L, L]``: query coordinate -> the key coordinates its window holds on one axis."""
    if not (1 <= kernel and kernel * dilation <= length and 1 <= stride <= kernel and dilation >= 1):
        raise ConfigError(
            f"neighbourhood axis of {length}: needs 1 <= kernel * dilation <= {length} and 1 <= stride <= kernel, "
            f"got kernel {kernel}, stride {stride}, dilation {dilation}"
        )
    x = torch.arange(length)
    group, member = x % dilation, x // dilation
    size = (length - group + dilation - 1) // dilation  # members of each coordinate's dilation group
    left, right = kernel // 2, kernel // 2 + kernel % 2 - 1
    leader = torch.minimum((member // stride) * stride + stride // 2, size - 1)
    centre = torch.maximum(torch.minimum(leader, size - 1 - right), torch.full_like(leader, left))
    offset = member[None, :] - centre[:, None]
    return (group[:, None] == group[None, :]) & (offset >= -left) & (offset <= right)


def _axes(grid: Triple, kernel: Triple, stride: Triple, dilation: Triple) -> list[torch.Tensor]:
    for name, value in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if len(value) != 3:
            raise ConfigError(f"neighbourhood {name} must be three integers (frames, rows, columns), got {value!r}")
    return [axis_neighbors(*args) for args in zip(grid, kernel, stride, dilation)]


def neighborhood_tokens(grid: Triple, kernel: Triple, stride: Triple = (1, 1, 1), dilation: Triple = (1, 1, 1)):
    """Bool ``[N, N]`` over the raster-ordered (frame, row, column) tokens: the token-exact mask."""
    rf, rh, rw = _axes(grid, kernel, stride, dilation)
    return torch.kron(torch.kron(rf.int(), rh.int()), rw.int()).bool()


def neighborhood_blocks(
    layout: SequenceLayout, block: int, kernel: Triple, stride: Triple = (1, 1, 1), dilation: Triple = (1, 1, 1)
) -> tuple[torch.Tensor, bool]:
    """``(blocks [Mb, Mb], exact)`` over the tile-ordered video tokens, with one block per tile.

    A block pair is kept when some token pair of the two tiles is; ``exact`` says that every kept pair
    is wholly kept, so that the block mask equals the token mask. Needs ``block == prod(layout.tile)``,
    a grid divisible by the tile and no text tokens."""
    grid, tile = (layout.frames, layout.height, layout.width), layout.tile
    if layout.text_len or block != math.prod(tile) or any(g % t for g, t in zip(grid, tile)):
        raise ConfigError(
            f"a neighbourhood block mask needs one block per tile: block {block} == prod(tile {tile}), a grid "
            f"{grid} divisible by the tile, and no text tokens"
        )
    some, every = [], []
    for relation, t in zip(_axes(grid, kernel, stride, dilation), tile):
        pairs = relation.reshape(relation.shape[0] // t, t, relation.shape[1] // t, t).float()
        some.append(pairs.amax(dim=(1, 3)).bool())
        every.append(pairs.amin(dim=(1, 3)).bool())

    def combine(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.kron(torch.kron(parts[0].int(), parts[1].int()), parts[2].int()).bool()

    kept, full = combine(some), combine(every)
    return kept, bool(torch.equal(kept, full))


def neighborhood_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: SequenceLayout,
    kernel: Triple,
    stride: Triple = (1, 1, 1),
    dilation: Triple = (1, 1, 1),
) -> torch.Tensor:
    """Token-exact neighbourhood attention of ``[B, H, N, D]`` tensors in ``layout``'s working order (video
    tokens in tile order, then text tokens, which see and are seen by every token). FlexAttention with
    the per-axis windows as its mask: a dense-masked reference on the CPU, a sparse kernel compiled on
    GPUs. ``SequenceLayout(F, H, W)`` (tile 1) is raster order."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    grid = (layout.frames, layout.height, layout.width)
    rf, rh, rw = (r.to(q.device) for r in _axes(grid, kernel, stride, dilation))
    n, video = layout.seq_len, layout.video_len
    if q.shape[2] != n or k.shape[2] != n:
        raise ConfigError(f"neighbourhood attention over {layout} needs {n} tokens, got {q.shape[2]} and {k.shape[2]}")
    coords = torch.cat([layout.token_coords(q.device), torch.zeros(n - video, 3, dtype=torch.long, device=q.device)])
    cf, ch, cw = coords.unbind(-1)

    def mask_mod(b, h, qi, ki):  # noqa: ANN001, ANN202
        near = rf[cf[qi], cf[ki]] & rh[ch[qi], ch[ki]] & rw[cw[qi], cw[ki]]
        return near | (qi >= video) | (ki >= video)

    mask = create_block_mask(mask_mod, None, None, n, n, device=q.device)
    return flex_attention(q, k, v, block_mask=mask)
