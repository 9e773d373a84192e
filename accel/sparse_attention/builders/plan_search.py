"""Moved to :mod:`accel.tuning.sparse_plan_search`.

The old names keep working until accel 0.3.0.
"""

from ...deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "DEFAULT_CANDIDATES": "accel.tuning.sparse_plan_search",
        "PlanSearch": "accel.tuning.sparse_plan_search",
        "expected_density": "accel.tuning.sparse_plan_search",
    },
)
