"""Per-architecture adapters, the built-in proving-ground models and the offline test factory.

Importing the adapter registry (``accel.pipelines.registry``) loads no built-in model: ``load``
and the built-in table are imported on first use.
"""

from typing import Any

from .registry import Adapter, lookup, supported_families

__all__ = ["Adapter", "load", "lookup", "supported_families"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from .loading import load

        return load
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
