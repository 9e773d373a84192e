"""Shared pieces of the caching plugins: batch fitting of cached outputs and residual helpers."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.hooks.hooks import BaseState

from ..context import CallInfo


class CachedOutput(BaseState):
    """Per-hook state of a caching plugin: the last computed output and the batch it was computed for."""

    def __init__(self) -> None:
        self.output: Any = None
        self.batch: int | None = None

    def reset(self) -> None:
        self.output = None
        self.batch = None


def map_tensors(value: Any, fn) -> Any:
    """Apply ``fn`` to every tensor in a (nested) tuple/list/dict/dataclass-like output."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return type(value)({k: map_tensors(v, fn) for k, v in value.items()})
    return value


def fit_batch(cached: Any, cached_batch: int, batch: int, info: CallInfo) -> Any | None:
    """A cached output adapted to the current module input's ``batch``, or None if it cannot be.

    The only change of batch inside a generation is adaptive guidance dropping the unconditional
    half of a stacked CFG batch: then the conditional half of the cached batch is taken.
    """
    if cached_batch == batch:
        return cached
    if cached_batch == 2 * batch and info.cfg_stacked:
        start = batch if info.cfg_order == "uncond_first" else 0
        return map_tensors(cached, lambda t: t[start:start + batch] if t.shape[0] == cached_batch else t)
    return None


def leading_batch(value: Any) -> int | None:
    """Leading dimension of the first tensor in ``value``."""
    if isinstance(value, torch.Tensor):
        return int(value.shape[0])
    if isinstance(value, (tuple, list)):
        for item in value:
            found = leading_batch(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        for item in value.values():
            found = leading_batch(item)
            if found is not None:
                return found
    return None


def step_pattern(full: list[bool]) -> str:
    """A compact picture of a per-step schedule: ``F`` computed, ``.`` cached."""
    return "".join("F" if f else "." for f in full)
