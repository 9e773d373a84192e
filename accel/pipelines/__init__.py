"""Per-architecture adapters, the built-in proving-ground models and the offline test factory."""

from .loading import load
from .registry import Adapter, lookup, supported_families

__all__ = ["Adapter", "load", "lookup", "supported_families"]
