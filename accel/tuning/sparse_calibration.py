"""Offline head-pattern search on a real pipeline or denoiser: run calibration inputs densely, observe every
attention layer's q/k/v, and pick per-head patterns (Sparse-vDiT, arXiv 2506.03065).

    patterns = calibrate_head_patterns(pipe, lambda: pipe(**inputs), error_bound=0.05, block_size=64)
    patterns.save("wan_patterns.json")
    accel.apply(pipe, accel.SparseAttentionConfig(pattern="searched", patterns_path="wan_patterns.json"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..api import apply, get_handle, remove
from ..errors import StateError
from ..sparse_attention.builders.head_patterns import HeadPatterns
from ..sparse_attention.config import SparseAttentionConfig
from .head_pattern_search import DEFAULT_CANDIDATES, HeadPatternSearch


def calibrate_head_patterns(
    target: Any,
    run: Callable[[], Any],
    *,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    error_bound: float = 0.05,
    block_size: int = 64,
    tile: tuple[int, int, int] = (4, 4, 4),
    allow_skip: bool = False,
    skip_bound: float = 0.02,
    sample_rows: int = 256,
    steps: Sequence[int] | None = None,
    num_inference_steps: int | None = None,
    meta: dict[str, Any] | None = None,
) -> HeadPatterns:
    """Search a :class:`HeadPatterns` for ``target`` (a pipeline or video-DiT denoiser).

    ``run()`` must call the pipeline/denoiser on calibration inputs; attention stays dense during
    the search (outputs are the stock outputs). ``steps`` restricts observation to those denoising
    steps (default: all). ``num_inference_steps`` is only needed for a bare denoiser with ``steps``.
    See :class:`~accel.tuning.head_pattern_search.HeadPatternSearch` for the other arguments.
    """
    if get_handle(target) is not None:
        raise StateError(
            "calibrate_head_patterns needs a target without accel plugins; call accel.remove(target) first"
        )
    search = HeadPatternSearch(candidates, error_bound, block_size, tile, allow_skip, skip_bound, sample_rows)
    config = SparseAttentionConfig(block_size=block_size, tile=tuple(tile), dense_warmup_fraction=0.0, dense_layers=())
    handle = apply(target, config, num_inference_steps=num_inference_steps)
    try:
        wanted = set(steps) if steps is not None else None
        for session in handle.sessions:
            for plugin in session.plugins:

                def observe(layer, q, k, v, layout, _plugin=plugin):
                    info = _plugin.session.context.current
                    if wanted is None or (info is not None and info.step_index in wanted):
                        search.observe(layer, q, k, v, layout)

                plugin.attention.force_dense = True
                plugin.attention.observer = observe
        run()
    finally:
        remove(target)
    return search.result(meta)
