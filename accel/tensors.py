"""Tensor-container and CFG-batch helpers shared by the hook core and every plugin (one of each).

Denoisers and their blocks take and return nested tuples, lists, dicts and ``*Output`` dataclasses.
These helpers find, map, slice and size the tensors inside them, and adapt a cached output to a
call whose batch lost the unconditional half of classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .context import CallInfo


def map_tensors(value: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor in a (nested) tuple/list/dict/namedtuple, keeping the container types."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return type(value)({k: map_tensors(v, fn) for k, v in value.items()})
    return value


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a (nested) container, depth first; None if there is none."""
    if isinstance(value, torch.Tensor):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def leading_batch(value: Any) -> int | None:
    """Leading dimension of the first tensor in ``value``."""
    tensor = first_tensor(value)
    return int(tensor.shape[0]) if tensor is not None else None


def tensor_bytes(value: Any) -> int:
    """Bytes held by the tensors in a (nested) container."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def slice_batch(value: Any, rows: slice, batch: int) -> Any:
    """``value`` with every tensor whose leading dimension is ``batch`` cut to ``rows``."""
    return map_tensors(value, lambda t: t[rows] if t.ndim and t.shape[0] == batch else t)


def fit_batch(cached: Any, cached_batch: int, batch: int, info: CallInfo) -> Any | None:
    """A cached output adapted to the current module input's ``batch``, or None if it cannot be.

    The only change of batch inside a generation is adaptive guidance dropping the unconditional
    half of a stacked CFG batch: then the conditional half of the cached batch is taken.
    """
    if cached_batch == batch:
        return cached
    if cached_batch == 2 * batch and info.cfg_stacked:
        return slice_batch(cached, info.rows("cond", batch), cached_batch)
    return None


def keep_both_halves(cached: Any, cached_batch: int | None, fresh: Any, batch: int, info: CallInfo) -> Any:
    """What to cache after a call: ``fresh``, or, when the call ran only the conditional half of a
    cache kept for both CFG halves (LinearAG predicting the unconditional one), the cache with its
    conditional rows replaced, so the next full-batch call finds both halves."""
    if cached is None or cached_batch != 2 * batch or not info.cfg_stacked:
        return fresh
    return splice_rows(cached, fresh, info.rows("cond", batch), cached_batch)


def splice_rows(cached: Any, fresh: Any, rows: slice, batch: int) -> Any:
    """``cached`` with ``rows`` of every tensor whose leading dimension is ``batch`` replaced by ``fresh``
    (the rows a half-batch call computed); other tensors stay as cached."""

    def splice(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        if not old.ndim or old.shape[0] != batch:
            return old
        out = old.clone()
        out[rows] = new
        return out

    return zip_map(splice, cached, fresh)


def zip_map(fn: Callable[..., torch.Tensor], first: Any, *others: Any) -> Any:
    """``fn`` over the tensors at the same place in containers of one structure (``first`` gives it)."""
    if isinstance(first, torch.Tensor):
        return fn(first, *others)
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(zip_map(fn, *items) for items in zip(first, *others)))
    if isinstance(first, (tuple, list)):
        return type(first)(zip_map(fn, *items) for items in zip(first, *others))
    if isinstance(first, dict):
        return type(first)({k: zip_map(fn, v, *(o[k] for o in others)) for k, v in first.items()})
    return first
