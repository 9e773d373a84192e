"""Caching schedules for diffusion transformers: a boolean ``recompute[step, block, component]``.

``True`` means the component runs; ``False`` means it returns the output it produced the last time
it ran (FORA, Selvaraju et al. arXiv 2407.01425; ECAD, Aggarwal et al. arXiv 2506.15682, whose
JSON layout ``schedule[step][block][component]`` this follows), or, where the optional
``forecast[step, block, component]`` holds an order k > 0, a degree-k forecast from its last k + 1
computed outputs. Schedules are data: JSON in and out, with the measured cost and quality of the
schedule embedded next to it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..files import brief, read_json, write_json

FORMAT = "accel-block-cache-schedule/1"


@dataclasses.dataclass
class CacheSchedule:
    """A per-step, per-block, per-component recompute mask (plus an optional one for the uncond branch)."""

    components: tuple[str, ...]
    recompute: np.ndarray  # bool [steps, blocks, components]
    uncond_recompute: np.ndarray | None = None  # same shape; None = same as recompute
    family: str | None = None
    forecast: np.ndarray | None = None  # int [steps, blocks, components], order of each cached unit; None = config's
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.recompute = np.asarray(self.recompute, dtype=bool)
        if self.recompute.ndim != 3 or self.recompute.shape[2] != len(self.components):
            raise ConfigError(
                f"a schedule must be bool[steps, blocks, {len(self.components)} components], "
                f"got shape {self.recompute.shape}"
            )
        if self.uncond_recompute is not None:
            self.uncond_recompute = np.asarray(self.uncond_recompute, dtype=bool)
            if self.uncond_recompute.shape != self.recompute.shape:
                raise ConfigError("the uncond schedule must have the same shape as the cond schedule")
        if self.forecast is not None:
            self.forecast = np.asarray(self.forecast, dtype=np.int64)
            if self.forecast.shape != self.recompute.shape or self.forecast.min(initial=0) < 0:
                raise ConfigError("the forecast schedule must be non-negative ints of the recompute schedule's shape")
            if self.forecast.max(initial=0) > 2:
                raise ConfigError(f"forecast orders must be in [0, 2], got {int(self.forecast.max())}")
        if self.recompute.shape[0] and not self.recompute[0].all():
            raise ConfigError("a schedule must recompute everything at step 0 (nothing is cached yet)")

    @property
    def num_steps(self) -> int:
        return int(self.recompute.shape[0])

    @property
    def num_blocks(self) -> int:
        return int(self.recompute.shape[1])

    def mask_for(self, branch: str) -> np.ndarray:
        if branch == "uncond" and self.uncond_recompute is not None:
            return self.uncond_recompute
        return self.recompute

    def recompute_fraction(self) -> float:
        masks = [self.recompute] + ([self.uncond_recompute] if self.uncond_recompute is not None else [])
        return float(np.mean([m.mean() for m in masks]))

    def check(self, num_steps: int, num_blocks: int, components: tuple[str, ...], family: str) -> None:
        if self.family and self.family != family:
            raise ConfigError(f"this schedule was made for the {self.family!r} family, the model is {family!r}")
        if (self.num_steps, self.num_blocks) != (num_steps, num_blocks) or tuple(self.components) != tuple(components):
            raise ConfigError(
                f"schedule shape (steps={self.num_steps}, blocks={self.num_blocks}, "
                f"components={list(self.components)}) "
                f"does not match the run (steps={num_steps}, blocks={num_blocks}, components={list(components)})"
            )

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "family": self.family,
            "components": list(self.components),
            "num_steps": self.num_steps,
            "num_blocks": self.num_blocks,
            "cache_schedule": {"schedule": self.recompute.tolist()},
            "metadata": self.metadata,
        }
        if self.uncond_recompute is not None:
            out["cache_schedule"]["uncond_schedule"] = self.uncond_recompute.tolist()
        if self.forecast is not None:
            out["cache_schedule"]["forecast_schedule"] = self.forecast.tolist()
        return out

    def save(self, path: str) -> str:
        return write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheSchedule:
        if data.get("format") != FORMAT:
            raise ConfigError(
                f"not an accel block-cache schedule (format {data.get('format')!r}, expected {FORMAT!r})"
            )
        sched = data["cache_schedule"]
        return cls(
            components=tuple(data["components"]),
            recompute=np.array(sched["schedule"], dtype=bool),
            uncond_recompute=np.array(sched["uncond_schedule"], dtype=bool) if "uncond_schedule" in sched else None,
            family=data.get("family"),
            metadata=data.get("metadata", {}),
            forecast=np.array(sched["forecast_schedule"]) if "forecast_schedule" in sched else None,
        )

    @classmethod
    def load(cls, path: str) -> CacheSchedule:
        data = read_json(path, "block-cache schedule")
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{path} is not a valid block-cache schedule: {brief(exc)}") from None


def fora_schedule(
    num_steps: int,
    num_blocks: int,
    components: tuple[str, ...],
    interval: int,
    warmup_steps: int = 0,
    live_first_blocks: int = 0,
    live_last_blocks: int = 0,
    cached_components: tuple[str, ...] | None = None,
    family: str | None = None,
) -> CacheSchedule:
    """FORA-style every-N schedule with dense warm-up steps and always-live first/last blocks.

    Every ``interval``-th step recomputes everything; on the others, the ``cached_components``
    (default: all) of the blocks between the live first and last ones reuse their last output.
    """
    mask = np.ones((num_steps, num_blocks, len(components)), dtype=bool)
    cacheable = np.array([c in (cached_components or components) for c in components])
    for step in range(num_steps):
        if step < warmup_steps or (step - warmup_steps) % interval == 0:
            continue
        for block in range(live_first_blocks, num_blocks - live_last_blocks):
            mask[step, block, cacheable] = False
    mask[0] = True
    return CacheSchedule(
        components,
        mask,
        family=family,
        metadata={
            "kind": "fora",
            "interval": interval,
            "warmup_steps": warmup_steps,
            "live_first_blocks": live_first_blocks,
            "live_last_blocks": live_last_blocks,
        },
    )
