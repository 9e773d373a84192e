"""``SparseAttentionConfig``: block-sparse attention for video diffusion transformers."""

from __future__ import annotations

import dataclasses

from ..config import PluginConfig, check_choice, check_float, check_int, check_int_tuple
from ..errors import ConfigError

PATTERNS = ("dynamic", "window", "searched", "neighborhood")
SCORES = ("mean", "sample")
BLOCK_SIZES = (4, 8, 16, 32, 64, 128, 256)
BACKEND_CHOICES = ("auto", "triton", "flex", "torch")


@dataclasses.dataclass(frozen=True)
class SparseAttentionConfig(PluginConfig):
    """Block-sparse self/joint attention on Wan 2.x, CogVideoX, HunyuanVideo and LTX-Video.

    Attributes:
        pattern: ``"dynamic"`` (content-aware, per head and step; Video-BLADE's ASA), ``"window"``
            (static 3D local window; STA) or ``"searched"`` (per-layer, per-head patterns from an offline
            search saved as JSON; Sparse-vDiT).
        tau: dynamic: cumulative block-score mass each query block keeps, in (0, 1].
        min_keep, max_keep: dynamic: bounds on the fraction of key blocks each query block keeps.
        score: dynamic: block scores from ``"mean"``-pooled queries/keys or a ``"sample"`` probe.
        samples_per_block: tokens per block for ``score="sample"`` (at most the block size is used).
        block_size: mask block (tokens), a power of two; kernels on GPU want 64 or 128.
        tile: 3D tile (frames, rows, columns) of the token reordering.
        window: ``"window"``: radius in tokens (frames, rows, columns) a query sees around itself.
        patterns_path: ``"searched"``: JSON file written by ``HeadPatterns.save`` / ``calibrate_head_patterns``.
        kernel_size, stride, dilation: ``"neighborhood"`` (GNA, arXiv 2504.16922; NATTEN's semantics): per axis
            (frames, rows, columns), each query sees ``kernel_size`` keys around its stride group's leader,
            among the positions of its dilation group. With ``stride == tile``, ``block_size == prod(tile)``,
            a grid divisible by the tile and windows on tile boundaries it runs block-sparse (exactly);
            otherwise at token granularity (FlexAttention, exact, not faster on the CPU).
        dense_warmup_fraction: leading fraction of the denoising steps that run dense.
        dense_layers: attention layers (0-based, in execution order) that always run dense.
        mask_reuse_steps: a mask built at step s serves steps s .. s + n - 1 (per layer and CFG branch).
        backend: ``"auto"``, ``"triton"``, ``"flex"`` or ``"torch"`` (see ``accel.kernels.dispatch``).
        force_diagonal: every query block also attends to its own positions.
    """

    short_prefix = "sparseattn"
    path_fields = ("patterns_path",)

    pattern: str = "dynamic"
    tau: float = 0.9
    min_keep: float = 0.1
    max_keep: float = 0.5
    score: str = "mean"
    samples_per_block: int = 16
    block_size: int = 64
    tile: tuple[int, int, int] = (4, 4, 4)
    window: tuple[int, int, int] = (2, 8, 8)
    patterns_path: str | None = None
    kernel_size: tuple[int, int, int] = (3, 9, 9)
    stride: tuple[int, int, int] = (1, 1, 1)
    dilation: tuple[int, int, int] = (1, 1, 1)
    dense_warmup_fraction: float = 0.2
    dense_layers: tuple[int, ...] = (0,)
    mask_reuse_steps: int = 1
    backend: str = "auto"
    force_diagonal: bool = True

    def __post_init__(self) -> None:
        name = "SparseAttentionConfig"
        check_choice(name, "pattern", self.pattern, PATTERNS)
        check_float(name, "tau", self.tau, 0.0, 1.0, low_inclusive=False)
        check_float(name, "min_keep", self.min_keep, 0.0, 1.0)
        check_float(name, "max_keep", self.max_keep, 0.0, 1.0, low_inclusive=False)
        if self.min_keep > self.max_keep:
            raise ConfigError(f"{name}.min_keep ({self.min_keep}) must not exceed max_keep ({self.max_keep})")
        check_choice(name, "score", self.score, SCORES)
        check_choice(name, "block_size", self.block_size, BLOCK_SIZES)
        check_int(name, "samples_per_block", self.samples_per_block, 1, 1024)
        check_int_tuple(name, "tile", self.tile, 1)
        if len(self.tile) != 3:
            raise ConfigError(f"{name}.tile must be three integers (frames, rows, columns), got {self.tile!r}")
        check_int_tuple(name, "window", self.window, 0)
        for field in ("kernel_size", "stride", "dilation"):
            value = getattr(self, field)
            check_int_tuple(name, field, value, 1, 10000)
            if len(value) != 3:
                raise ConfigError(f"{name}.{field} must be three integers (frames, rows, columns), got {value!r}")
        if any(s > k for s, k in zip(self.stride, self.kernel_size)):
            raise ConfigError(
                f"{name}.stride {self.stride} must not exceed kernel_size {self.kernel_size} on any axis"
            )
        if len(self.window) != 3:
            raise ConfigError(f"{name}.window must be three integers (frames, rows, columns), got {self.window!r}")
        if self.patterns_path is not None and not isinstance(self.patterns_path, str):
            raise ConfigError(f"{name}.patterns_path must be a path string or None, got {self.patterns_path!r}")
        if self.pattern == "searched" and not self.patterns_path:
            raise ConfigError(
                f"{name}.pattern='searched' needs patterns_path (a JSON file from HeadPatterns.save or "
                "calibrate_head_patterns)"
            )
        check_float(name, "dense_warmup_fraction", self.dense_warmup_fraction, 0.0, 1.0)
        check_int_tuple(name, "dense_layers", self.dense_layers, 0)
        check_int(name, "mask_reuse_steps", self.mask_reuse_steps, 1)
        check_choice(name, "backend", self.backend, BACKEND_CHOICES)
        check_choice(name, "force_diagonal", self.force_diagonal, (True, False))
