"""accel: training-free acceleration plugins for diffusers pipelines and timm vision transformers.

import accel
handle = accel.apply(pipe, accel.DeepCacheConfig(interval=3))
image = pipe("a handwritten 7").images[0]
print(accel.summary(pipe))
accel.remove(pipe)
"""

from __future__ import annotations

from .api import AccelHandle, apply, get_handle, remove, replicate, summary
from .caching import BlockCacheConfig, DeepCacheConfig, apply_block_cache, apply_deep_cache
from .config import PluginConfig
from .errors import (
    AccelError,
    ConcurrentUseError,
    ConfigError,
    IncompatiblePluginsError,
    InvalidInputError,
    MissingContextError,
    NotFoundError,
    OutOfMemoryError,
    OutOfSpaceError,
    StateError,
    UnsupportedModelError,
)
from .plan import Plan, PlanSetting, load_plan
from .plugin import Plugin, register_plugin
from .reparam.plugin import RePaViTConfig  # registers the RePaViT plugin
from .sampling import (
    AdaptiveGuidanceConfig,
    GuidanceWindowConfig,
    LinearAGConfig,
    RASConfig,
    SolverConfig,
    TimestepScheduleConfig,
    apply_adaptive_guidance,
    apply_guidance_window,
    apply_linear_ag,
    apply_ras,
    apply_solver,
    apply_timestep_schedule,
)
from .sparse_attention import SparseAttentionConfig, apply_sparse_attention

__version__ = "0.1.0"

__all__ = [
    # the API
    "apply",
    "remove",
    "summary",
    "replicate",
    "get_handle",
    "AccelHandle",
    # plugin configs, and their diffusers-style entry points
    "DeepCacheConfig",
    "BlockCacheConfig",
    "AdaptiveGuidanceConfig",
    "LinearAGConfig",
    "RASConfig",
    "SparseAttentionConfig",
    "RePaViTConfig",
    "TimestepScheduleConfig",
    "GuidanceWindowConfig",
    "SolverConfig",
    "apply_deep_cache",
    "apply_block_cache",
    "apply_adaptive_guidance",
    "apply_linear_ag",
    "apply_ras",
    "apply_sparse_attention",
    "apply_timestep_schedule",
    "apply_guidance_window",
    "apply_solver",
    # tuned plans (a setting's target check, PlanTargetConfig, comes with plan.pick(...).configs)
    "load_plan",
    "Plan",
    "PlanSetting",
    # errors
    "AccelError",
    "ConfigError",
    "UnsupportedModelError",
    "IncompatiblePluginsError",
    "MissingContextError",
    "InvalidInputError",
    "NotFoundError",
    "StateError",
    "ConcurrentUseError",
    "OutOfMemoryError",
    "OutOfSpaceError",
    # extension points
    "Plugin",
    "PluginConfig",
    "register_plugin",
]
