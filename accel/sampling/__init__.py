"""Sampling-side plugins: adaptive guidance (AG, LinearAG, a diffusers guider) and region-adaptive sampling."""

from .adaptive_guidance import AdaptiveGuidanceConfig, apply_adaptive_guidance
from .guider import AdaptiveClassifierFreeGuidance
from .linear_ag import LinearAGConfig, apply_linear_ag
from .ras import RASConfig, apply_ras

__all__ = [
    "AdaptiveClassifierFreeGuidance",
    "AdaptiveGuidanceConfig",
    "LinearAGConfig",
    "apply_adaptive_guidance",
    "apply_linear_ag",
    "apply_ras",
    "RASConfig",
]
