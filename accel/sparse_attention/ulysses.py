"""Block-sparse attention inside diffusers' Ulysses context parallelism (DeepSpeed-Ulysses, arXiv 2309.14509).

Algorithm: each rank holds a shard of the sequence; Ulysses' all-to-all gives it the whole sequence
for ``H / P`` of the heads, where the block mask is built and applied exactly as in one process (a
head's mask depends on its own queries and keys only), and a second all-to-all returns the shards.
The statistics of each call are summed over the group, so every rank reports what one process would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def ulysses_degree(parallel_config: Any) -> int | None:
    """The Ulysses degree of a diffusers ``ParallelConfig`` that shards the sequence with Ulysses alone
    (no Ring attention), else None."""
    config = getattr(parallel_config, "context_parallel_config", None)
    if config is None:
        return None
    ulysses, ring = config.ulysses_degree or 1, config.ring_degree or 1
    return ulysses if ulysses > 1 and ring == 1 else None


def sequence_shards(parallel_config: Any) -> int:
    """Into how many shards context parallelism cuts the sequence (1 without it)."""
    config = getattr(parallel_config, "context_parallel_config", None)
    return 1 if config is None else (config.ulysses_degree or 1) * (config.ring_degree or 1)


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    parallel_config: Any,
    local: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``local`` (attention on ``[B, N, H / P, D]``, the whole sequence for this rank's heads) between
    Ulysses' two all-to-alls, for ``q, k, v`` of ``[B, N / P, H, D]``; returns ``[B, N / P, H, D]``."""
    from diffusers.models.attention_dispatch import TemplatedUlyssesAttention

    def forward_op(ctx: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any):
        return local(query, key, value)

    return TemplatedUlyssesAttention.apply(
        q, k, v, None, 0.0, False, None, False, False, forward_op, None, parallel_config
    )


def group_sum(values: list[float], parallel_config: Any) -> list[float]:
    """``values`` summed over the ranks of the Ulysses group (every rank must call it)."""
    import torch.distributed as dist

    group = parallel_config.context_parallel_config._ulysses_mesh.get_group()
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total, group=group)
    return total.tolist()


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain attention on ``[B, N, H, D]`` tensors (what diffusers' native backend computes)."""
    out = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)
