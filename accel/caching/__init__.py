"""Feature caching: DeepCache for U-Nets, schedule-driven block caching (FORA, searched schedules) for DiTs,
with optional forecasting. The schedule search is an offline tool: :mod:`accel.tuning.cache_search`."""

from .block_cache import BlockCacheConfig, apply_block_cache
from .deepcache import DeepCacheConfig, apply_deep_cache
from .schedule import CacheSchedule, fora_schedule

__all__ = [
    "BlockCacheConfig",
    "CacheSchedule",
    "DeepCacheConfig",
    "apply_block_cache",
    "apply_deep_cache",
    "fora_schedule",
]
