"""Sampling-side plugins: adaptive guidance (AG, LinearAG, a diffusers guider), the guidance window,
region-adaptive sampling, chosen timestep schedules and the solver."""

from .adaptive_guidance import AdaptiveGuidanceConfig, apply_adaptive_guidance
from .guidance_window import GuidanceWindowConfig, apply_guidance_window
from .guider import AdaptiveClassifierFreeGuidance
from .linear_ag import LinearAGConfig, apply_linear_ag
from .ras import RASConfig, apply_ras
from .solver import SolverConfig, apply_solver
from .timestep_schedule import TimestepScheduleConfig, apply_timestep_schedule

__all__ = [
    "AdaptiveClassifierFreeGuidance",
    "AdaptiveGuidanceConfig",
    "GuidanceWindowConfig",
    "apply_guidance_window",
    "LinearAGConfig",
    "apply_adaptive_guidance",
    "apply_linear_ag",
    "apply_ras",
    "RASConfig",
    "SolverConfig",
    "apply_solver",
    "TimestepScheduleConfig",
    "apply_timestep_schedule",
]
