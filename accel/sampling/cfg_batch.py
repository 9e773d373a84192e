"""Helpers for plugins that change which classifier-free-guidance branches a denoiser call evaluates.

A stacked call holds ``[uncond, cond]`` (diffusers' order; ``[cond, uncond]`` for DiT and Lumina)
along the batch dimension. These helpers slice every batched argument to the rows that must run,
pull the prediction tensor out of whatever the denoiser returns, and put a full-size prediction
back in the same container, so the pipeline's guidance arithmetic sees what it expects.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch

from ..errors import InvalidInputError
from ..tensors import map_tensors


def select_rows(
    args: tuple,
    kwargs: dict,
    index: torch.Tensor,
    batch: int,
    unbatched: frozenset[str],
    signature: inspect.Signature | None = None,
    batch_dims: dict[str, int] | None = None,
) -> tuple[tuple, dict]:
    """Keep batch rows ``index`` of every tensor whose leading dimension is the batch.

    Arguments named in ``unbatched`` (RoPE tables, position ids) are left alone, as are tensors
    whose leading dimension is not the batch (scalar timesteps, shared masks). Arguments named in
    ``batch_dims`` hold the batch on another dimension (HiDream's Llama embeddings: dim 1).
    """
    batch_dims = batch_dims or {}

    def take(value: Any, dim: int = 0) -> Any:
        return map_tensors(
            value,
            lambda t: t.index_select(dim, index.to(t.device)) if t.ndim > dim and t.shape[dim] == batch else t,
        )

    def one(name: str | None, value: Any) -> Any:
        if name in unbatched:
            return value
        return take(value, batch_dims.get(name, 0))

    names = list(signature.parameters)[1:] if signature is not None else []
    new_args = tuple(one(names[i] if i < len(names) else None, arg) for i, arg in enumerate(args))
    new_kwargs = {k: one(k, v) for k, v in kwargs.items()}
    return new_args, new_kwargs


def prediction_of(output: Any) -> torch.Tensor:
    """The prediction tensor in a denoiser output (a ``*Output`` dataclass, a tuple or a tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    if dataclasses.is_dataclass(output) or hasattr(output, "to_tuple"):
        return output[0]
    raise InvalidInputError(f"cannot find the prediction in a denoiser output of type {type(output).__name__}")


def with_prediction(output: Any, prediction: torch.Tensor) -> Any:
    """``output`` with its prediction tensor replaced (same container type)."""
    if isinstance(output, torch.Tensor):
        return prediction
    if isinstance(output, tuple):
        return (prediction,) + tuple(output[1:])
    if isinstance(output, list):
        return [prediction] + list(output[1:])
    key = next(iter(output.keys()))
    fields = {k: output[k] for k in output.keys()}
    fields[key] = prediction
    return type(output)(**fields)


def cosine_per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each sample's flattened predictions, in float32."""
    return torch.nn.functional.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1)


def cosine_whole(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the whole batch flattened into one vector."""
    return torch.nn.functional.cosine_similarity(a.reshape(1, -1).float(), b.reshape(1, -1).float(), dim=1)[0]
