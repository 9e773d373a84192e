"""Forecasting cached features instead of reusing them (TaylorSeer, Liu et al., arXiv 2503.06923).

Algorithm: a cached unit keeps its outputs from its last ``k + 1`` computations, at positions
``x_0 > x_1 > ...`` (the step index, or the timestep); on a cached step at ``x`` it returns the
degree-``k`` polynomial through them evaluated at ``x``. That is TaylorSeer's order-``k`` Taylor
expansion with derivatives from finite differences, written in Lagrange form so that a forecast is
one weighted sum of stored tensors; ``k = 0`` is plain reuse.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from diffusers.hooks.hooks import BaseState

from ..context import CallInfo
from ..errors import ConfigError
from ..tensors import fit_batch, tensor_bytes, zip_map

#: What the polynomial is a function of: the sampler step index, or the timestep the denoiser gets.
VARIABLES = ("step", "timestep")
MAX_ORDER = 2


def position(info: CallInfo, variable: str) -> float:
    """Where the call sits on the forecast variable's axis."""
    if variable == "step":
        return float(info.step_index)
    timestep = info.timestep
    if timestep is None:
        raise ConfigError("forecast_variable='timestep' needs a denoiser that receives a timestep; use 'step'")
    return float(torch.as_tensor(timestep).flatten()[0])


def lagrange_weights(points: list[float], x: float) -> list[float]:
    """Weights ``w_i`` with ``p(x) = sum_i w_i f(x_i)`` for the polynomial through ``points``."""
    weights = []
    for i, xi in enumerate(points):
        w = 1.0
        for j, xj in enumerate(points):
            if j != i:
                w *= (x - xj) / (xi - xj)
        weights.append(w)
    return weights


def _weighted_sum(weights: list[float]):
    def combine(*tensors: torch.Tensor) -> torch.Tensor:
        first = tensors[0]
        if not first.is_floating_point():
            return first
        acc_dtype = torch.float32 if first.dtype in (torch.float16, torch.bfloat16) else first.dtype
        out = first.to(acc_dtype) * weights[0]
        for w, t in zip(weights[1:], tensors[1:]):
            out.add_(t.to(acc_dtype), alpha=w)
        return out.to(first.dtype)

    return combine


class CachedOutput(BaseState):
    """Per-hook state of a caching plugin: the unit's last computed outputs, newest first, with their
    positions on the forecast axis, and the batch they were computed for."""

    def __init__(self) -> None:
        self.points: list[tuple[float, Any]] = []
        self.batch: int | None = None
        #: one sample's input shape when the outputs were computed: an output is reused only for an
        #: input of the same shape (a sequence that grows or shrinks mid-generation is recomputed)
        self.sample_shape: tuple[int, ...] | None = None

    def reset(self) -> None:
        self.points = []
        self.batch = None
        self.sample_shape = None

    @property
    def output(self) -> Any:
        return self.points[0][1] if self.points else None

    def record(self, x: float, output: Any, batch: int, keep: int, info: CallInfo) -> None:
        """Store a computed output; keep the newest ``keep``. Older outputs of another batch are fitted
        to this one (adaptive guidance dropping the unconditional half) or dropped."""
        older = []
        for px, value in self.points:
            if px == x:
                continue
            fitted = fit_batch(value, self.batch, batch, info) if self.batch != batch else value
            if fitted is None:
                break
            older.append((px, fitted))
        self.points = [(x, output)] + older[: max(keep - 1, 0)]
        self.batch = batch

    def estimate(self, x: float, order: int) -> Any:
        """The output at ``x``: reuse for ``order`` 0, else the polynomial through the newest ``order + 1``
        points (fewer while fewer have been computed)."""
        points = self.points[: order + 1]
        if len(points) == 1:
            return points[0][1]
        weights = lagrange_weights([p[0] for p in points], x)
        return zip_map(_weighted_sum(weights), *[p[1] for p in points])

    def history_bytes(self) -> int:
        """Bytes held beyond the newest output: what forecasting costs over plain reuse."""
        return sum(tensor_bytes(value) for _, value in self.points[1:])


@dataclasses.dataclass
class CacheMemory:
    """The bytes a caching plugin's hooks hold, and their peak over a generation."""

    #: (hook, branch) -> (bytes of the newest cached output, bytes of the forecast's older ones)
    held: dict[tuple[int, str], tuple[int, int]] = dataclasses.field(default_factory=dict)
    peak_cache_bytes: int = 0
    peak_forecast_bytes: int = 0

    def note(self, key: tuple[int, str], cached: CachedOutput) -> None:
        self.held[key] = (tensor_bytes(cached.output), cached.history_bytes())
        self.peak_cache_bytes = max(self.peak_cache_bytes, sum(a + b for a, b in self.held.values()))
        self.peak_forecast_bytes = max(self.peak_forecast_bytes, sum(b for _, b in self.held.values()))


def check_forecast(owner: str, order: Any, variable: Any) -> None:
    """Validate the ``forecast_order`` and ``forecast_variable`` fields of a caching config."""
    from ..config import check_choice, check_int

    check_int(owner, "forecast_order", order, 0, MAX_ORDER)
    check_choice(owner, "forecast_variable", variable, VARIABLES)
