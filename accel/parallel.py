"""diffusers' context parallelism (``enable_parallelism`` with a ``ContextParallelConfig``, Ulysses or
Ring attention): whether a denoiser runs under it, and the refusal of plugins that cannot act there.

Under context parallelism every rank holds only its shard of the token sequence. A plugin that
chooses tokens or attention blocks on the whole sequence (RAS, sparse attention) would, on a shard,
silently do nothing, so it refuses instead, at apply and at every generation's start (parallelism
may be enabled after accel is applied).
"""

from __future__ import annotations

from typing import Any

import torch

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


class SequenceShards:
    """How context parallelism cut the token sequence: into ``count`` equal, contiguous shards, this rank
    holding shard ``index`` (diffusers' ``EquipartitionSharder`` over the flattened Ring x Ulysses mesh).
    One process is ``count=1``, with :meth:`gather` the identity."""

    def __init__(self, count: int = 1, index: int = 0, group: Any = None) -> None:
        self.count, self.index, self.group = count, index, group

    @classmethod
    def of(cls, module: Any) -> SequenceShards:
        """The shards of a diffusers model under context parallelism (one shard without it)."""
        config = context_parallel_config(module)
        if config is None:
            return cls()
        import torch.distributed as dist

        group = config._flattened_mesh.get_group()
        return cls(dist.get_world_size(group), dist.get_rank(group), group)

    def gather(self, x: Any, dim: int) -> Any:
        """Every rank's equal-sized ``x`` concatenated along ``dim`` in shard order (all ranks must call it)."""
        if self.count == 1:
            return x
        from torch.distributed import _functional_collectives as funcol

        stacked = funcol.all_gather_single(x.contiguous(), 0, group=self.group)  # ranks along dim 0
        return torch.cat(stacked.chunk(self.count, dim=0), dim=dim)

    def own(self, x: Any, dim: int) -> Any:
        """This rank's shard of a full-length ``x``."""
        return x if self.count == 1 else x.chunk(self.count, dim=dim)[self.index]
