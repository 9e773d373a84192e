"""Region-adaptive sampling (RAS) for diffusion transformers."""

from .config import RASConfig
from .plugin import RASPlugin, apply_ras

__all__ = ["RASConfig", "RASPlugin", "apply_ras"]
