"""Moved to :mod:`accel.tuning.cache_search` (offline tools live in ``accel.tuning``).

The old names keep working until accel 0.3.0.
"""

from ..deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "QUALITY_METRICS": "accel.tuning.cache_search",
        "SearchSettings": "accel.tuning.cache_search",
        "CalibrationSet": "accel.tuning.cache_search",
        "ScheduleSearch": "accel.tuning.cache_search",
        "plot_front": "accel.tuning.cache_search",
        "search_cache": "accel.tuning.cache_search",
    },
)
