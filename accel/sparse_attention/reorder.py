"""Token reordering into 3D tiles, so that 1-D blocks of the sequence are spatially compact.

Video DiTs flatten latents in raster order (frame, row, column); a block of 64 consecutive tokens is
then a thin strip of one row. Regrouping tokens tile by tile (tiles of ``(t, h, w)`` tokens, tiles in
raster order, tokens inside a tile in raster order) makes each block a small 3D cube, which is what
makes block scores meaningful and windows block-aligned (Sliding Tile Attention, arXiv 2502.04507;
NABLA's local patching; BLADE, arXiv 2508.10774, uses a space-filling curve for the same reason).

Grids that are not multiples of the tile get partial tiles at the edges; any shape works.
Permutations are cached per ``(frames, height, width, tile)`` and per device.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from ..errors import ConfigError

#: Where text tokens sit in a joint (video + text) sequence.
TEXT_POSITIONS = ("first", "last")


@functools.lru_cache(maxsize=64)
def _tile_permutation_cpu(
    frames: int, height: int, width: int, tile: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    tt, th, tw = tile
    t = torch.arange(frames).view(-1, 1, 1).expand(frames, height, width)
    h = torch.arange(height).view(1, -1, 1).expand(frames, height, width)
    w = torch.arange(width).view(1, 1, -1).expand(frames, height, width)
    nh, nw = -(-height // th), -(-width // tw)
    tile_id = ((t // tt) * nh + h // th) * nw + w // tw
    inner = ((t % tt) * th + h % th) * tw + w % tw
    key = (tile_id * (tt * th * tw) + inner).flatten()
    perm = torch.argsort(key, stable=True)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel())
    return perm, inv


_DEVICE_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def tile_permutation(
    frames: int, height: int, width: int, tile: tuple[int, int, int], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(perm, inv)`` with ``tiled = raster[perm]`` and ``raster = tiled[inv]`` (int64 index tensors).

    ``perm[i]`` is the raster index of the i-th token in tile order.
    """
    for name, value in (("frames", frames), ("height", height), ("width", width)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if len(tile) != 3 or any(int(x) < 1 for x in tile):
        raise ConfigError(f"tile must be three positive integers (t, h, w), got {tile!r}")
    tile = tuple(int(x) for x in tile)
    key = (frames, height, width, tile, str(torch.device(device)))
    cached = _DEVICE_CACHE.get(key)
    if cached is None:
        perm, inv = _tile_permutation_cpu(frames, height, width, tile)
        cached = (perm.to(device), inv.to(device))
        if len(_DEVICE_CACHE) > 256:
            _DEVICE_CACHE.clear()
        _DEVICE_CACHE[key] = cached
    return cached


@dataclasses.dataclass(frozen=True)
class SequenceLayout:
    """Where the tokens of one attention call come from.

    Attributes:
        frames, height, width: the video token grid (after patchifying).
        text_len: text tokens in the joint sequence (0 for video-only self-attention).
        text_position: ``"first"`` (CogVideoX) or ``"last"`` (HunyuanVideo) in the model's order.
        tile: the 3D tile of the working order.

    The *working order* puts the video tokens in tile order, then the text tokens (always last,
    so that blocks start aligned with tiles).
    """

    frames: int
    height: int
    width: int
    text_len: int = 0
    text_position: str = "last"
    tile: tuple[int, int, int] = (1, 1, 1)

    def __post_init__(self) -> None:
        if self.text_position not in TEXT_POSITIONS:
            raise ConfigError(f"text_position must be one of {list(TEXT_POSITIONS)}, got {self.text_position!r}")
        if min(self.frames, self.height, self.width) < 1 or self.text_len < 0:
            raise ConfigError(f"bad layout {self}")

    @property
    def video_len(self) -> int:
        return self.frames * self.height * self.width

    @property
    def seq_len(self) -> int:
        return self.video_len + self.text_len

    def permutation(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(perm, inv)`` over the joint sequence: ``working = model_order[perm]``, ``model_order = working[inv]``."""
        key = ("joint", self, str(torch.device(device)))
        cached = _DEVICE_CACHE.get(key)
        if cached is not None:
            return cached
        perm, _ = tile_permutation(self.frames, self.height, self.width, self.tile, "cpu")
        text = torch.arange(self.text_len)
        if self.text_position == "first":
            perm = torch.cat([perm + self.text_len, text])
        else:
            perm = torch.cat([perm, text + self.video_len])
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel())
        cached = (perm.to(device), inv.to(device))
        _DEVICE_CACHE[key] = cached
        return cached

    def token_coords(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """int64 ``[video_len, 3]``: (frame, row, column) of each video token in working order."""
        perm, _ = tile_permutation(self.frames, self.height, self.width, self.tile, device)
        hw = self.height * self.width
        return torch.stack([perm // hw, (perm // self.width) % self.height, perm % self.width], dim=-1)


def to_working_order(x: torch.Tensor, layout: SequenceLayout, dim: int = 1) -> torch.Tensor:
    """Gather the model-order sequence dimension ``dim`` of ``x`` into the working order."""
    perm, _ = layout.permutation(x.device)
    return x.index_select(dim, perm)


def to_model_order(x: torch.Tensor, layout: SequenceLayout, dim: int = 1) -> torch.Tensor:
    """Inverse of :func:`to_working_order`."""
    _, inv = layout.permutation(x.device)
    return x.index_select(dim, inv)
