"""What the sampling plugins and tools read off a diffusers scheduler."""

from __future__ import annotations

from typing import Any


def is_flow_matching(scheduler: Any) -> bool:
    """The scheduler integrates a flow-matching ODE (``FlowMatch*`` schedulers, or flow sigmas on UniPC /
    DPM-Solver), so the model's prediction is a velocity."""
    if scheduler is None:
        return False
    config = getattr(scheduler, "config", {}) or {}
    return "FlowMatch" in type(scheduler).__name__ or bool(config.get("use_flow_sigmas", False))
