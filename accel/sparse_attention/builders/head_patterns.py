"""Offline per-layer, per-head sparsity patterns (Sparse-vDiT, arXiv 2506.03065), stored as JSON.

Head patterns assign each attention layer one pattern spec per head (``"window:2,8,8"``, ``"skip"``, ...;
see :mod:`.patterns`). Layers they leave out run dense. They are plain JSON (never pickle)::

    {"format": "accel.sparse_attention.head_patterns", "version": 1, "block_size": 64, "tile": [4, 4, 4],
     "error_bound": 0.05, "layers": {"1": ["window:2,8,8", "skip", ...], ...},
     "errors": {"1": [0.012, 0.0, ...]}, "densities": {"1": [0.21, 0.0, ...]}, "meta": {...}}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ...errors import ConfigError, NotFoundError
from ...files import read_json, write_json
from ...kernels.block_mask import BlockSparseMask
from ..reorder import SequenceLayout
from .patterns import PatternSpec, pattern_mask

PATTERNS_FORMAT = "accel.sparse_attention.head_patterns"
PATTERNS_VERSION = 1


@dataclasses.dataclass(frozen=True)
class HeadPatterns:
    """Per-layer, per-head pattern specs and the block geometry they were searched with.

    Attributes:
        layers: layer index (order of the adapter's attention modules) -> one spec per head.
        block_size: mask block size (tokens) the patterns were searched with.
        tile: 3D tile of the token reordering.
        error_bound: the relative-error bound of the search, if any.
        errors: measured relative error of the chosen pattern per head (informational).
        densities: density of the chosen pattern per head on the calibration shape (informational).
        meta: free-form JSON-compatible information (model, shapes, date).
    """

    layers: dict[int, tuple[str, ...]]
    block_size: int = 64
    tile: tuple[int, int, int] = (4, 4, 4)
    error_bound: float | None = None
    errors: dict[int, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    densities: dict[int, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for layer, specs in self.layers.items():
            if not isinstance(layer, int) or layer < 0:
                raise ConfigError(f"head patterns: layer keys must be non-negative integers, got {layer!r}")
            if not specs:
                raise ConfigError(f"head patterns: layer {layer} lists no heads")
            for spec in specs:
                PatternSpec.parse(spec)
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ConfigError(f"head patterns: block_size must be a positive integer, got {self.block_size!r}")
        if len(self.tile) != 3 or any(int(t) < 1 for t in self.tile):
            raise ConfigError(f"head patterns: tile must be three positive integers, got {self.tile!r}")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PATTERNS_FORMAT,
            "version": PATTERNS_VERSION,
            "block_size": self.block_size,
            "tile": list(self.tile),
            "error_bound": self.error_bound,
            "layers": {str(k): [str(PatternSpec.parse(s)) for s in v] for k, v in sorted(self.layers.items())},
            "errors": {str(k): [float(x) for x in v] for k, v in sorted(self.errors.items())},
            "densities": {str(k): [float(x) for x in v] for k, v in sorted(self.densities.items())},
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadPatterns:
        if data.get("format") != PATTERNS_FORMAT:
            raise ConfigError(
                f"not a sparse-attention head-patterns file (format {data.get('format')!r}, "
                f"expected {PATTERNS_FORMAT!r})"
            )
        if data.get("version") != PATTERNS_VERSION:
            raise ConfigError(
                f"unsupported head-patterns version {data.get('version')!r}; "
                f"this accel reads version {PATTERNS_VERSION}"
            )

        def per_layer(d: dict[str, Any], cast: Any) -> dict[int, tuple]:
            return {int(k): tuple(cast(x) for x in v) for k, v in (d or {}).items()}

        return cls(
            layers=per_layer(data["layers"], str),
            block_size=int(data["block_size"]),
            tile=tuple(int(t) for t in data["tile"]),
            error_bound=data.get("error_bound"),
            errors=per_layer(data.get("errors"), float),
            densities=per_layer(data.get("densities"), float),
            meta=dict(data.get("meta") or {}),
        )

    def save(self, path: str | Path) -> Path:
        write_json(str(path), self.to_dict(), indent=2)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> HeadPatterns:
        """Head patterns saved by :meth:`save`; NotFoundError / ConfigError for a missing or unreadable file."""
        if not Path(path).exists():
            raise NotFoundError(
                f"no sparse-attention head-patterns file at {str(path)!r} (write one with HeadPatterns.save)"
            )
        data = read_json(str(path), "sparse-attention head patterns")
        if not isinstance(data, dict):
            raise ConfigError(f"sparse-attention head patterns {str(path)!r} is not a JSON object")
        return cls.from_dict(data)

    # ------------------------------------------------------------------ masks
    def mask(
        self,
        layer: int,
        layout: SequenceLayout,
        heads: int,
        device: torch.device | str = "cpu",
        force_diagonal: bool = True,
    ) -> BlockSparseMask | None:
        """The ``[1, H, Mb, Nb]`` mask of ``layer`` on ``layout``, or None when the layer is dense."""
        specs = self.layers.get(layer)
        if specs is None:
            return None
        if len(specs) != heads:
            raise ConfigError(
                f"head patterns: layer {layer} has {len(specs)} head patterns, the model has {heads} heads"
            )
        if all(PatternSpec.parse(s).name == "dense" for s in specs):
            return None
        return pattern_mask(list(specs), layout, self.block_size, device, force_diagonal)
