"""Moved to :mod:`accel.tuning.sparse_calibration`.

The old names keep working until accel 0.3.0.
"""

from ..deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "calibrate_plan": "accel.tuning.sparse_calibration",
    },
)
