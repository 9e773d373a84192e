"""Proving-ground data, generated offline and deterministically (no download).

* **digits**: scikit-learn's handwritten digits (1,797 8x8 images, shipped with the package),
  upscaled to 32x32 RGB. Captions ``"a handwritten 7"``. Held-out split: every 6th image.
* **shapes**: procedural 32x32 RGB images of a circle, square or triangle in red, green, blue or
  yellow at one of five positions, with jitter in size and offset. Captions
  ``"a red triangle at the top left"``. 60 classes; the held-out split uses other seeds.
* **moving shapes**: 9-frame 32x32 videos of a shape moving left, right, up or down.
  Captions ``"a yellow square moving up"``. 48 classes.

Images are float tensors in [-1, 1], shape ``(3, H, W)``; videos ``(F, 3, H, W)``.
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError

IMAGE_SIZE = 32
VIDEO_FRAMES = 9

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "center")
DIRECTIONS = ("left", "right", "up", "down")

_RGB = {"red": (0.95, 0.15, 0.15), "green": (0.15, 0.85, 0.25), "blue": (0.2, 0.35, 1.0), "yellow": (0.95, 0.9, 0.15)}
_CENTRES = {
    "top left": (9.0, 9.0),
    "top right": (9.0, 23.0),
    "bottom left": (23.0, 9.0),
    "bottom right": (23.0, 23.0),
    "center": (16.0, 16.0),
}  # (row, col)
_STEP = {"left": (0.0, -1.0), "right": (0.0, 1.0), "up": (-1.0, 0.0), "down": (1.0, 0.0)}

#: Every word the built-in text encoders know (plus special tokens added by the tokenizer).
VOCABULARY = tuple(
    sorted(
        set(
            "a an the of at in on image photo picture video handwritten digit number moving".split()
            + [str(d) for d in range(10)]
            + list(DIGIT_WORDS)
            + list(SHAPES)
            + list(COLOURS)
            + list(DIRECTIONS)
            + "top bottom left right center".split()
        )
    )
)


# ------------------------------------------------------------------------------------- digits
def digit_caption(label: int) -> str:
    return f"a handwritten {label}"


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32) / 16.0  # (N, 8, 8) in [0, 1]
    images = F.interpolate(images[:, None], size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=False)
    images = images.clamp(0, 1).repeat(1, 3, 1, 1) * 2 - 1
    return images, torch.tensor(data.target, dtype=torch.long)


def digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, 3, 32, 32) in [-1, 1], labels (N,))`` of the ``train`` or ``heldout`` split."""
    images, labels = _digits_arrays()
    index = torch.arange(len(labels))
    keep = (index % 6 == 5) if split == "heldout" else (index % 6 != 5)
    if split not in ("train", "heldout"):
        raise ConfigError(f"split must be 'train' or 'heldout', got {split!r}")
    return images[keep], labels[keep]


def augment_digits(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random +-2 px shifts (the digits are small; shifts keep them inside the frame)."""
    shifts = torch.randint(-2, 3, (2,), generator=generator).tolist()
    return torch.roll(images, shifts=shifts, dims=(-2, -1))


# ------------------------------------------------------------------------------------- shapes
@dataclasses.dataclass(frozen=True)
class ShapeSpec:
    shape: str
    colour: str
    position: str

    @property
    def caption(self) -> str:
        return (
            f"a {self.colour} {self.shape} at the {self.position}"
            if self.position != "center"
            else f"a {self.colour} {self.shape} in the center"
        )

    @property
    def labels(self) -> tuple[int, int, int]:
        return SHAPES.index(self.shape), COLOURS.index(self.colour), POSITIONS.index(self.position)


def all_shape_specs() -> list[ShapeSpec]:
    return [ShapeSpec(s, c, p) for s in SHAPES for c in COLOURS for p in POSITIONS]


def _shape_mask(
    shape: str, centre: tuple[float, float], size: float, size_px: int = IMAGE_SIZE, ss: int = 4
) -> torch.Tensor:
    """Anti-aliased coverage mask (H, W) in [0, 1], rendered at ``ss``x supersampling."""
    n = size_px * ss
    coords = (torch.arange(n, dtype=torch.float32) + 0.5) / ss
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    r, c = rows - centre[0], cols - centre[1]
    half = size / 2
    if shape == "circle":
        inside = r**2 + c**2 <= half**2
    elif shape == "square":
        inside = (r.abs() <= half * 0.85) & (c.abs() <= half * 0.85)
    elif shape == "triangle":
        top, bottom = -half, half * 0.8
        width_at = (r - top) / (bottom - top) * half  # apex at the top
        inside = (r >= top) & (r <= bottom) & (c.abs() <= width_at)
    else:
        raise ConfigError(f"unknown shape {shape!r}")
    return F.avg_pool2d(inside.float()[None, None], ss)[0, 0]


def render_shape(
    spec: ShapeSpec,
    generator: torch.Generator,
    centre: tuple[float, float] | None = None,
    size: float | None = None,
    background: torch.Tensor | None = None,
) -> torch.Tensor:
    """One (3, 32, 32) image in [-1, 1]."""
    if size is None:
        size = 11.0 + 3.0 * float(torch.rand((), generator=generator))
    if centre is None:
        jitter = (torch.rand(2, generator=generator) - 0.5) * 4.0
        base = _CENTRES[spec.position]
        centre = (base[0] + float(jitter[0]), base[1] + float(jitter[1]))
    mask = _shape_mask(spec.shape, centre, size)
    colour = torch.tensor(_RGB[spec.colour])[:, None, None]
    if background is None:
        background = _background(generator)
    image = background * (1 - mask) + colour * mask
    return image.clamp(0, 1) * 2 - 1


def _background(generator: torch.Generator) -> torch.Tensor:
    level = 0.08 + 0.06 * float(torch.rand((), generator=generator))
    return torch.full((3, IMAGE_SIZE, IMAGE_SIZE), level)


def shapes(n: int, seed: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` shape images: ``(images (n, 3, 32, 32), labels (n, 3) [shape, colour, position], captions)``.

    Specs cycle through all 60 classes in a seeded order; ``split="heldout"`` draws from a
    disjoint seed range, so held-out images are never seen in training.
    """
    offset = 10_000_000 if split == "heldout" else 0
    generator = torch.Generator().manual_seed(offset + seed)
    specs = all_shape_specs()
    order = torch.randperm(len(specs), generator=generator)
    images, labels, captions = [], [], []
    for i in range(n):
        spec = specs[int(order[i % len(specs)])]
        images.append(render_shape(spec, generator))
        labels.append(spec.labels)
        captions.append(spec.caption)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), captions


# ------------------------------------------------------------------------------ varied shapes
def render_varied_shape(spec: ShapeSpec, generator: torch.Generator) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """One (3, 32, 32) image in [-1, 1] and its nuisance attributes, binned: size (3 bins), background
    brightness (3) and the side the light comes from (4). The domain classifier learns them beside the
    class, so that its features (FID's) see more than the class.

    The same classes and captions as :func:`render_shape`, with much more variety within a class:
    size 10-16 px, +-3 px offset, a darker or brighter and slightly off-hue fill lit
    from a random side, on a two-tone gradient background.
    """
    u = torch.rand(12, generator=generator).tolist()  # 8 used; the draw order is part of the data
    size = 10.0 + 6.0 * u[0]
    base = _CENTRES[spec.position]
    centre = (base[0] + (u[2] - 0.5) * 6.0, base[1] + (u[3] - 0.5) * 6.0)
    mask = _shape_mask(spec.shape, centre, size)

    tint = (torch.rand(3, generator=generator) - 0.5) * 0.12
    fill = (torch.tensor(_RGB[spec.colour]) * (0.7 + 0.35 * u[4]) + tint).clamp(0, 1)[:, None, None]
    light = 2 * math.pi * u[5]
    rows = torch.arange(IMAGE_SIZE, dtype=torch.float32).view(-1, 1) - centre[0]
    cols = torch.arange(IMAGE_SIZE, dtype=torch.float32).view(1, -1) - centre[1]
    ramp = ((rows * math.sin(light) + cols * math.cos(light)) / (size / 2)).clamp(-1, 1)
    shaded = (fill * (1 + 0.3 * ramp)).clamp(0, 1)

    low, high = 0.04 + 0.14 * u[6], 0.04 + 0.34 * u[7]
    slope = 2 * math.pi * u[8]
    axis = (rows + centre[0] - 15.5) * math.sin(slope) + (cols + centre[1] - 15.5) * math.cos(slope)
    t = (axis / 22.0 + 0.5).clamp(0, 1)
    grey = torch.tensor([1.0, 1.0, 1.0]) + (torch.rand(3, generator=generator) - 0.5) * 0.3  # a faint hue
    background = (low + (high - low) * t) * grey[:, None, None]
    image = (background * (1 - mask) + shaded * mask).clamp(0, 1) * 2 - 1

    brightness = (low + high) / 2
    return image, (
        min(int(u[0] * 3), 2),
        int(brightness > 0.13) + int(brightness > 0.19),
        int(light / (math.pi / 2)) % 4,
    )


def varied_shapes(n: int, seed: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` varied shape images: ``(images, labels (n, 6) [shape, colour, position, size, background,
    shading bins], captions)``, cycling through the 60 classes of :func:`shapes` in a seeded order."""
    offset = 10_000_000 if split == "heldout" else 0
    generator = torch.Generator().manual_seed(offset + seed + 13)
    specs = all_shape_specs()
    order = torch.randperm(len(specs), generator=generator)
    images, labels, captions = [], [], []
    for i in range(n):
        spec = specs[int(order[i % len(specs)])]
        image, bins = render_varied_shape(spec, generator)
        images.append(image)
        labels.append(spec.labels + bins)
        captions.append(spec.caption)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), captions


#: The image sets over the 60 shape classes (same captions, same label columns first), by dataset name.
SHAPE_SETS = {"shapes": shapes, "varied_shapes": varied_shapes}


# ------------------------------------------------------------------------------- moving shapes
@dataclasses.dataclass(frozen=True)
class MotionSpec:
    shape: str
    colour: str
    direction: str

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} moving {self.direction}"

    @property
    def labels(self) -> tuple[int, int, int]:
        return SHAPES.index(self.shape), COLOURS.index(self.colour), DIRECTIONS.index(self.direction)


def all_motion_specs() -> list[MotionSpec]:
    return [MotionSpec(s, c, d) for s in SHAPES for c in COLOURS for d in DIRECTIONS]


def render_motion(spec: MotionSpec, generator: torch.Generator, frames: int = VIDEO_FRAMES) -> torch.Tensor:
    """One video ``(frames, 3, 32, 32)`` in [-1, 1]: the shape travels ~16 px along its direction."""
    size = 10.0 + 2.0 * float(torch.rand((), generator=generator))
    speed = 1.7 + 0.6 * float(torch.rand((), generator=generator))
    dr, dc = _STEP[spec.direction]
    travel = speed * (frames - 1)
    cross = 10.0 + 12.0 * float(torch.rand((), generator=generator))  # position across the motion axis
    start_along = 16.0 - travel / 2 + (float(torch.rand((), generator=generator)) - 0.5) * 3.0
    background = _background(generator)
    out = []
    for f in range(frames):
        along = start_along + speed * f
        if dr == 0:  # horizontal motion
            col = along if dc > 0 else IMAGE_SIZE - along
            centre = (cross, col)
        else:
            row = along if dr > 0 else IMAGE_SIZE - along
            centre = (row, cross)
        out.append(
            render_shape(
                ShapeSpec(spec.shape, spec.colour, "center"),
                generator,
                centre=centre,
                size=size,
                background=background,
            )
        )
    return torch.stack(out)


def moving_shapes(n: int, seed: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` videos ``(n, F, 3, 32, 32)``, labels ``(n, 3)`` [shape, colour, direction], captions."""
    offset = 10_000_000 if split == "heldout" else 0
    generator = torch.Generator().manual_seed(offset + seed + 7)
    specs = all_motion_specs()
    order = torch.randperm(len(specs), generator=generator)
    videos, labels, captions = [], [], []
    for i in range(n):
        spec = specs[int(order[i % len(specs)])]
        videos.append(render_motion(spec, generator))
        labels.append(spec.labels)
        captions.append(spec.caption)
    return torch.stack(videos), torch.tensor(labels, dtype=torch.long), captions


def motion_direction(video: torch.Tensor) -> torch.Tensor:
    """Per video, the mean displacement ``(drow, dcol)`` of the bright (shape) pixels' centroid per frame.

    ``video``: ``(..., F, 3, H, W)`` in [-1, 1]. Used by the temporal metrics: a video moves
    "right" when ``dcol`` is the largest positive component, and so on.
    """
    x = (video + 1) / 2
    saturation = x.max(dim=-3).values - x.min(dim=-3).values  # coloured pixels stand out from the grey background
    brightness = x.max(dim=-3).values
    weight = (saturation + brightness - 0.3).clamp(min=0)
    h, w = weight.shape[-2:]
    rows = torch.arange(h, dtype=weight.dtype).view(h, 1)
    cols = torch.arange(w, dtype=weight.dtype).view(1, w)
    total = weight.sum(dim=(-2, -1)).clamp(min=1e-6)
    r = (weight * rows).sum(dim=(-2, -1)) / total
    c = (weight * cols).sum(dim=(-2, -1)) / total
    frames = r.shape[-1]
    dr = (r[..., -1] - r[..., 0]) / (frames - 1)
    dc = (c[..., -1] - c[..., 0]) / (frames - 1)
    return torch.stack([dr, dc], dim=-1)


def direction_index(displacement: torch.Tensor) -> torch.Tensor:
    """Map ``(drow, dcol)`` displacements to indices into :data:`DIRECTIONS`."""
    dr, dc = displacement[..., 0], displacement[..., 1]
    horizontal = dc.abs() >= dr.abs()
    idx = torch.where(horizontal, torch.where(dc < 0, 0, 1), torch.where(dr < 0, 2, 3))
    return idx


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] to [0, 1]."""
    return (images.clamp(-1, 1) + 1) / 2


def grid(images: torch.Tensor, nrow: int = 8) -> np.ndarray:
    """A uint8 HxWx3 grid of ``(N, 3, h, w)`` images in [-1, 1] (for sample sheets)."""
    n = images.shape[0]
    ncol = nrow
    nrows = math.ceil(n / ncol)
    h, w = images.shape[-2:]
    pad = 2
    canvas = torch.ones(3, nrows * (h + pad) + pad, ncol * (w + pad) + pad)
    x = to_unit(images)
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = x[i]
    return (canvas.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
