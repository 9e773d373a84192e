"""diffusers' context parallelism (``enable_parallelism`` with a ``ContextParallelConfig``, Ulysses or
Ring attention): whether a denoiser runs under it, and the refusal of plugins that cannot act there.

Under context parallelism every rank holds only its shard of the token sequence. A plugin that
chooses tokens or attention blocks on the whole sequence (RAS, sparse attention) would, on a shard,
silently do nothing, so it refuses instead, at apply and at every generation's start (parallelism
may be enabled after accel is applied).
"""

from __future__ import annotations

from typing import Any

from .errors import UnsupportedModelError


def parallel_config(module: Any) -> Any | None:
    """The ``ParallelConfig`` a diffusers model runs under, or None (also for a compiled wrapper)."""
    return getattr(getattr(module, "_orig_mod", module), "_parallel_config", None)


def context_parallel_config(module: Any) -> Any | None:
    """The ``ContextParallelConfig`` a diffusers model runs under, or None."""
    return getattr(parallel_config(module), "context_parallel_config", None)


def refuse_context_parallelism(who: str, module: Any, why: str) -> None:
    """Raise :class:`UnsupportedModelError` naming ``who`` and ``why`` when ``module`` is context-parallel."""
    config = context_parallel_config(module)
    if config is None:
        return
    degrees = (
        f"ulysses_degree={getattr(config, 'ulysses_degree', None)}, ring_degree={getattr(config, 'ring_degree', None)}"
    )
    raise UnsupportedModelError(
        f"{who} does not run under diffusers' context parallelism ({degrees}): {why}. Generate on one GPU "
        "per image (accelerate splits prompts over GPUs), or remove it from this parallel run"
    )
