"""Moved to :mod:`accel.tuning.cache_search_spaces`.

The old names keep working until accel 0.3.0.
"""

from ..deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "BlockScheduleSpace": "accel.tuning.cache_search_spaces",
        "DeepCacheStepSpace": "accel.tuning.cache_search_spaces",
    },
)
