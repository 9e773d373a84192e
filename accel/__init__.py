"""accel: training-free acceleration plugins for diffusers pipelines and timm vision transformers.

    import accel
    handle = accel.apply(pipe, accel.DeepCacheConfig(interval=3))
    image = pipe("a handwritten 7").images[0]
    print(accel.summary(pipe))
    accel.remove(pipe)
"""

from __future__ import annotations

from .api import AccelHandle, apply, get_handle, remove, summary
from .config import PluginConfig
from .errors import AccelError, ConfigError, IncompatiblePluginsError, MissingContextError, UnsupportedModelError
from .plugin import Plugin, register_plugin

__version__ = "0.1.0"

__all__ = [
    "AccelError", "AccelHandle", "ConfigError", "IncompatiblePluginsError", "MissingContextError", "Plugin",
    "PluginConfig", "UnsupportedModelError", "apply", "get_handle", "register_plugin", "remove", "summary",
]
