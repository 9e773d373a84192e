"""The plugins the demo offers: their editable fields, the "safe" / "balanced" / "fast" presets, and
turning a panel's values into validated accel configs. No Gradio here (the UI builds its widgets
from :func:`plugins`). Every panel comes from a plugin's own facts (:class:`accel.facts.PluginFacts`).

Each preset is a full set of field values; "custom" means the user edited a field by hand.
LinearAG is left out (it needs a per-model coefficient file from ``accel calibrate-linear-ag``) and
RePaViT is a vision plugin (the "Vision" tab).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import PluginConfig
from ..errors import AccelError, ConfigError
from ..facts import PRESET_NAMES, Field, PluginFacts, plugins_with_facts
from ..plugin import plugin_for

__all__ = ["CUSTOM", "PRESET_NAMES", "Field", "PluginSpec", "build_configs", "by_key", "plugins", "support"]

CUSTOM = "custom"


@dataclasses.dataclass(frozen=True)
class PluginSpec:
    """A plugin panel: the plugin's facts (title, fields, presets) and its config class."""

    facts: PluginFacts
    config_cls: type[PluginConfig]

    key = property(lambda self: self.facts.key)
    title = property(lambda self: self.facts.title)
    blurb = property(lambda self: self.facts.blurb)
    fields = property(lambda self: self.facts.fields)
    presets = property(lambda self: self.facts.presets)
    identity = property(lambda self: self.facts.identity)  # field values that make the plugin a no-op

    @property
    def plugin_cls(self):
        return plugin_for(self.config_cls())

    def defaults(self, preset: str = "balanced") -> dict[str, Any]:
        return dict(self.presets[preset])

    def config(self, values: dict[str, Any]) -> PluginConfig:
        """A validated config from field values (missing fields: the "balanced" preset)."""
        merged = self.defaults()
        unknown = sorted(set(values) - {f.name for f in self.fields})
        if unknown:
            raise ConfigError(
                f"{self.title}: unknown setting(s) {', '.join(unknown)}; "
                f"settings are {', '.join(f.name for f in self.fields)}"
            )
        merged.update(values)
        kwargs = {f.name: f.coerce(merged[f.name]) for f in self.fields}
        try:
            return self.config_cls(**kwargs)
        except AccelError as exc:
            raise ConfigError(f"{self.title}: {exc}") from None


def plugins() -> tuple[PluginSpec, ...]:
    """A panel for every registered plugin whose facts declare demo fields, in the facts' order."""
    return tuple(PluginSpec(p.facts, p.config_cls) for p in plugins_with_facts() if p.facts.fields)


def by_key() -> dict[str, PluginSpec]:
    return {spec.key: spec for spec in plugins()}


def build_configs(enabled: dict[str, dict[str, Any]] | None) -> list[PluginConfig]:
    """Configs for the enabled plugins ``{key: field values}``; raises ValueError with a readable message."""
    configs = []
    specs = by_key()
    for key, values in (enabled or {}).items():
        spec = specs.get(key)
        if spec is None:
            raise ConfigError(f"unknown plugin {key!r}; the demo offers: {', '.join(specs)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{spec.title}: settings must be a mapping of field names to values")
        configs.append(spec.config(values))
    return configs


def support(adapter: Any, has_pipeline: bool = True) -> dict[str, str | None]:
    """``{key: None if the plugin can run on the adapter's model, else the reason it cannot}``."""
    out: dict[str, str | None] = {}
    for spec in plugins():
        if adapter is None:
            out[spec.key] = "accel has no adapter for this model's denoiser"
            continue
        config = spec.config_cls()
        try:
            spec.plugin_cls.check(adapter, config, has_pipeline=has_pipeline)
            out[spec.key] = None
        except AccelError as exc:
            out[spec.key] = str(exc)
    return out
