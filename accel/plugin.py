"""Plugin base class and the registry keyed by config type.

A plugin is the code behind one config dataclass. ``accel.apply`` creates one plugin instance per
(config, denoiser), asks it to :meth:`Plugin.check` the target, then to :meth:`Plugin.attach` its
hooks through the :class:`~accel.session.DenoiserSession`, which records every registration so a
failure (or ``accel.remove``) takes all of them off again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .config import PluginConfig
from .errors import ConfigError, UnsupportedModelError

if TYPE_CHECKING:
    from .facts import PluginFacts
    from .pipelines.registry import Adapter
    from .session import DenoiserSession

#: Every adapter kind; plugins narrow this down.
ALL_KINDS = frozenset({"unet", "image_dit", "video_dit", "vit"})


class Plugin:
    """Base of every accel plugin.

    Class attributes:
        config_cls: the config dataclass this plugin implements.
        name: short id used in hook names and summaries.
        kinds: adapter kinds the plugin supports.
        claims: resources the plugin takes over on a denoiser (see :mod:`accel.compat`).
        needs_pipeline: the plugin wraps pipeline-level objects (scheduler step) and cannot run on
            a bare denoiser.
        facts: what the demo, ``accel tune``, the default sweep and the compatibility rules know of
            the plugin (:class:`accel.facts.PluginFacts`); None for plugins none of them offer.
    """

    config_cls: ClassVar[type[PluginConfig]]
    name: ClassVar[str] = "plugin"
    kinds: ClassVar[frozenset[str]] = ALL_KINDS
    claims: ClassVar[frozenset[str]] = frozenset()
    needs_pipeline: ClassVar[bool] = False
    facts: ClassVar[PluginFacts | None] = None

    def __init__(self, config: PluginConfig, session: DenoiserSession) -> None:
        self.config = config
        self.session = session

    # -- checks, before anything is attached -----------------------------------------------
    @classmethod
    def check(cls, adapter: Adapter, config: PluginConfig, has_pipeline: bool) -> None:
        """Raise if this plugin cannot run on a denoiser of ``adapter``'s family."""
        if adapter.kind not in cls.kinds:
            from .pipelines.registry import supported_adapters

            ok = [a.family for a in supported_adapters() if a.kind in cls.kinds]
            raise UnsupportedModelError(
                f"{type(config).__name__} does not support {adapter.title} ({adapter.family}); "
                f"it supports: {', '.join(ok)}"
            )
        refusals = dict(adapter.unsupported)
        refused = next((refusals[c.__name__] for c in type(config).__mro__ if c.__name__ in refusals), None)
        if refused is not None:
            raise UnsupportedModelError(f"{type(config).__name__} does not run on {adapter.title}: {refused}")
        if cls.needs_pipeline and not has_pipeline:
            raise UnsupportedModelError(
                f"{type(config).__name__} wraps the pipeline's scheduler step; apply it to the pipeline "
                "(accel.apply(pipe, config)), not to the bare denoiser"
            )

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self) -> None:
        """Register hooks (through ``self.session``)."""
        raise NotImplementedError

    def detach(self) -> None:
        """Undo anything not undone by removing the hooks (the session removes hooks itself)."""

    def on_generation_start(self) -> None:
        """A new pipeline call started: reset statistics."""

    def on_generation_end(self) -> None:
        """The last step ran."""

    def stats(self) -> dict[str, Any]:
        """Statistics of the last generation, JSON-compatible."""
        return {}

    def hook_name(self, suffix: str = "") -> str:
        return f"accel_{self.name}" + (f"_{suffix}" if suffix else "")


_PLUGINS: dict[type[PluginConfig], type[Plugin]] = {}


def register_plugin(plugin_cls: type[Plugin]) -> type[Plugin]:
    """Class decorator: make ``plugin_cls`` the implementation of ``plugin_cls.config_cls``."""
    config_cls = plugin_cls.config_cls
    if config_cls in _PLUGINS and _PLUGINS[config_cls] is not plugin_cls:
        raise ConfigError(f"{config_cls.__name__} already has a plugin: {_PLUGINS[config_cls].__name__}")
    _PLUGINS[config_cls] = plugin_cls
    return plugin_cls


def plugin_for(config: Any) -> type[Plugin]:
    """The plugin class of a config instance, or a ConfigError listing the known configs."""
    for cls in type(config).__mro__:
        if cls in _PLUGINS:
            return _PLUGINS[cls]
    known = ", ".join(sorted(c.__name__ for c in _PLUGINS))
    raise ConfigError(f"{type(config).__name__} is not an accel plugin config; known configs: {known}")


def registered_configs() -> list[type[PluginConfig]]:
    return sorted(_PLUGINS, key=lambda c: c.__name__)


def registered_plugins() -> list[type[Plugin]]:
    return [_PLUGINS[c] for c in registered_configs()]


def unregister_plugin(plugin_cls: type[Plugin]) -> None:
    """Take a plugin out of the registry (for plugins registered by tests)."""
    _PLUGINS.pop(plugin_cls.config_cls, None)


def config_from_dict(data: dict[str, Any]) -> PluginConfig:
    """A validated config from ``{"type": "DeepCacheConfig", field: value, ...}`` (data, never code)."""
    if not isinstance(data, dict) or "type" not in data:
        raise ConfigError(f"a plugin config must be a mapping with a 'type' key, got {data!r}")
    by_name = {cls.__name__: cls for cls in _PLUGINS}
    cls = by_name.get(data["type"])
    if cls is None:
        raise ConfigError(f"unknown config type {data['type']!r}; known: {sorted(by_name)}")
    return cls.from_dict(data)
