"""The plugins the demo offers: their editable fields, the "safe" / "balanced" / "fast" presets, and
turning a panel's values into validated accel configs. No Gradio here (the UI builds its widgets
from :data:`PLUGINS`).

Each preset is a full set of field values; "custom" means the user edited a field by hand.
LinearAG is left out (it needs a per-model coefficient file from ``accel calibrate-linear-ag``) and
RePaViT is a vision plugin (the "Vision" tab).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..caching import BlockCacheConfig, DeepCacheConfig
from ..config import PluginConfig
from ..errors import AccelError, ConfigError
from ..files import brief
from ..plugin import plugin_for
from ..sampling import AdaptiveGuidanceConfig, RASConfig
from ..sparse_attention import SparseAttentionConfig

PRESET_NAMES = ("safe", "balanced", "fast")
CUSTOM = "custom"
#: DeepCache's presets keep the library's default skip branch (its numbering is DeepCacheConfig's).
DEEPCACHE_BRANCH = DeepCacheConfig().branch


@dataclasses.dataclass(frozen=True)
class Field:
    """One editable config field: ``kind`` is "int", "float" or "choice"."""

    name: str
    label: str
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    info: str = ""

    def coerce(self, value: Any) -> Any:
        """The value in the config's type; raises ValueError with a readable message."""
        if self.kind == "choice":
            if value not in self.choices:
                # numbers may arrive as strings or floats from a client
                for choice in self.choices:
                    if str(choice) == str(value) or (
                        isinstance(choice, int) and _is_number(value) and float(value) == choice
                    ):
                        return choice
                raise ConfigError(f"{self.label}: {brief(value)} is not one of {', '.join(map(str, self.choices))}")
            return value
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ConfigError(f"{self.label}: a number is required")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.label}: {brief(value)} is not a number") from None
        except OverflowError:  # an int beyond the float range (10**400)
            raise ConfigError(f"{self.label}: the number is too large for the allowed range") from None
        if not math.isfinite(number):
            raise ConfigError(f"{self.label}: {brief(value)} is not a finite number")
        if self.kind == "int":
            if number != int(number):
                raise ConfigError(f"{self.label}: {brief(value)} must be a whole number")
            number = int(number)
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            raise ConfigError(f"{self.label}: {value} is outside [{self.minimum:g}, {self.maximum:g}]")
        return number


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class PluginSpec:
    """A plugin panel: the config class, its fields and presets."""

    key: str
    title: str
    config_cls: type[PluginConfig]
    blurb: str
    fields: tuple[Field, ...]
    presets: dict[str, dict[str, Any]]
    identity: dict[str, Any]  # field values that make the plugin a no-op (outputs equal the baseline)

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


PLUGINS: tuple[PluginSpec, ...] = (
    PluginSpec(
        "deepcache",
        "DeepCache",
        DeepCacheConfig,
        "U-Nets: reuse the deep U-Net features for N-1 of every N steps; only the shallow branch runs in between.",
        (
            Field("interval", "interval N", "int", 1, 10, 1, info="a full U-Net step every N steps; 1 = off"),
            Field("branch", "branch", "int", 0, 11, 1, info="live skip branch (official numbering); 0 = fastest"),
            Field("schedule", "schedule", "choice", choices=("uniform", "quadratic")),
            Field("full_steps_start", "full steps at start", "int", 0, 20, 1),
            Field("full_steps_end", "full steps at end", "int", 0, 20, 1),
        ),
        {
            "safe": dict(
                interval=2, branch=DEEPCACHE_BRANCH, schedule="uniform", full_steps_start=1, full_steps_end=1
            ),
            "balanced": dict(
                interval=3, branch=DEEPCACHE_BRANCH, schedule="uniform", full_steps_start=0, full_steps_end=0
            ),
            "fast": dict(
                interval=5, branch=DEEPCACHE_BRANCH, schedule="quadratic", full_steps_start=0, full_steps_end=0
            ),
        },
        dict(interval=1, branch=DEEPCACHE_BRANCH, schedule="uniform", full_steps_start=0, full_steps_end=0),
    ),
    PluginSpec(
        "block_cache",
        "BlockCache (FORA)",
        BlockCacheConfig,
        "DiTs: recompute attention/FFN outputs of each block every N steps and reuse them in between.",
        (
            Field("interval", "interval N", "int", 1, 8, 1, info="recompute every N steps; 1 = off"),
            Field("warmup_steps", "dense warm-up steps", "int", 0, 20, 1),
            Field("live_first_blocks", "never-cached first blocks", "int", 0, 8, 1),
            Field("live_last_blocks", "never-cached last blocks", "int", 0, 8, 1),
        ),
        {
            "safe": dict(interval=2, warmup_steps=4, live_first_blocks=1, live_last_blocks=1),
            "balanced": dict(interval=2, warmup_steps=2, live_first_blocks=0, live_last_blocks=0),
            "fast": dict(interval=3, warmup_steps=1, live_first_blocks=0, live_last_blocks=0),
        },
        dict(interval=1, warmup_steps=0, live_first_blocks=0, live_last_blocks=0),
    ),
    PluginSpec(
        "adaptive_guidance",
        "Adaptive guidance",
        AdaptiveGuidanceConfig,
        "Classifier-free guidance models: drop the unconditional branch once it agrees with the conditional one.",
        (
            Field(
                "threshold",
                "threshold γ",
                "float",
                -1.0,
                1.01,
                0.001,
                info="drop CFG once cos(cond, uncond) ≥ γ; above 1 = off, -1 = after step 1",
            ),
            Field("min_steps", "steps before testing", "int", 0, 50, 1),
            Field("reduction", "decision per", "choice", choices=("batch", "sample")),
        ),
        {
            "safe": dict(threshold=0.999, min_steps=2, reduction="batch"),
            "balanced": dict(threshold=0.99, min_steps=0, reduction="batch"),
            "fast": dict(threshold=0.95, min_steps=0, reduction="batch"),
        },
        dict(threshold=1.01, min_steps=0, reduction="batch"),
    ),
    PluginSpec(
        "ras",
        "RAS (region-adaptive sampling)",
        RASConfig,
        "Image DiTs (SD3, PixArt, Flux, ...): on sparse steps recompute only the image tokens that change most.",
        (
            Field(
                "sample_ratio", "recomputed tokens", "float", 0.05, 1.0, 0.05, info="fraction per sparse step; 1 = off"
            ),
            Field("warmup_steps", "dense warm-up steps", "int", 1, 20, 1),
            Field("metric", "importance metric", "choice", choices=("std", "l2")),
            Field("keep", "recompute tokens with", "choice", choices=("high", "low")),
            Field("starvation_scale", "starvation scale", "float", 0.0, 1.0, 0.05),
        ),
        {
            "safe": dict(sample_ratio=0.75, warmup_steps=4, metric="std", keep="high", starvation_scale=0.1),
            "balanced": dict(sample_ratio=0.5, warmup_steps=4, metric="std", keep="high", starvation_scale=0.1),
            "fast": dict(sample_ratio=0.25, warmup_steps=2, metric="std", keep="high", starvation_scale=0.1),
        },
        dict(sample_ratio=1.0, warmup_steps=4, metric="std", keep="high", starvation_scale=0.1),
    ),
    PluginSpec(
        "sparse_attention",
        "Sparse attention (video)",
        SparseAttentionConfig,
        "Video DiTs (Wan, CogVideoX, HunyuanVideo, LTX): block-sparse self-attention chosen per head and step.",
        (
            Field("pattern", "pattern", "choice", choices=("dynamic", "window")),
            Field("tau", "kept score mass tau", "float", 0.05, 1.0, 0.01),
            Field("max_keep", "max kept key blocks", "float", 0.05, 1.0, 0.05),
            Field("block_size", "block size (tokens)", "choice", choices=(4, 8, 16, 32, 64, 128)),
            Field("dense_warmup_fraction", "dense warm-up fraction", "float", 0.0, 1.0, 0.05),
            Field("mask_reuse_steps", "mask reuse steps", "int", 1, 10, 1),
        ),
        {
            "safe": dict(
                pattern="dynamic",
                tau=0.95,
                max_keep=0.75,
                block_size=64,
                dense_warmup_fraction=0.3,
                mask_reuse_steps=1,
            ),
            "balanced": dict(
                pattern="dynamic", tau=0.9, max_keep=0.5, block_size=64, dense_warmup_fraction=0.2, mask_reuse_steps=1
            ),
            "fast": dict(
                pattern="dynamic", tau=0.8, max_keep=0.3, block_size=64, dense_warmup_fraction=0.1, mask_reuse_steps=2
            ),
        },
        dict(pattern="dynamic", tau=1.0, max_keep=1.0, block_size=64, dense_warmup_fraction=1.0, mask_reuse_steps=1),
    ),
)

BY_KEY: dict[str, PluginSpec] = {spec.key: spec for spec in PLUGINS}


def build_configs(plugins: dict[str, dict[str, Any]] | None) -> list[PluginConfig]:
    """Configs for the enabled plugins ``{key: field values}``; raises ValueError with a readable message."""
    configs = []
    for key, values in (plugins or {}).items():
        spec = BY_KEY.get(key)
        if spec is None:
            raise ConfigError(f"unknown plugin {key!r}; the demo offers: {', '.join(BY_KEY)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{spec.title}: settings must be a mapping of field names to values")
        configs.append(spec.config(values))
    return configs


def support(adapter: Any, has_pipeline: bool = True) -> dict[str, str | None]:
    """``{key: None if the plugin can run on the adapter's model, else the reason it cannot}``."""
    out: dict[str, str | None] = {}
    for spec in PLUGINS:
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
