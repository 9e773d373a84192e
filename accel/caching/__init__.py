"""Feature caching: DeepCache for U-Nets, schedule-driven block caching for DiTs, schedule search."""

from .deepcache import DeepCacheConfig, apply_deep_cache

__all__ = ["DeepCacheConfig", "apply_deep_cache"]
