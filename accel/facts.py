"""What a plugin declares about itself, once, beside its code: its demo panel, its ``accel tune`` genes,
its entries in the default ``accel eval`` sweep, and the plugins it cannot be combined with.

The demo panels (:mod:`accel.app.presets`), ``accel tune``'s search space
(:mod:`accel.tuning.stack_space`), the default sweep (:mod:`accel.evaluation.defaults`) and the
compatibility rules (:mod:`accel.compat`) read these facts from the registered plugins, so adding a
plugin touches its own module only (``docs/adding_a_plugin.md``)::

    @register_plugin
    class MyPlugin(Plugin):
        config_cls = MyConfig
        name = "my_plugin"
        facts = PluginFacts(title="My plugin", blurb="...", fields=(...), presets={...}, ...)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .files import brief

#: The demo's preset names, from the most careful to the fastest.
PRESET_NAMES = ("safe", "balanced", "fast")


#: The field kinds: a number, one of some choices, or a fixed-length tuple of whole numbers.
FIELD_KINDS = ("int", "float", "choice", "ints")


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field a user may edit in the demo: ``kind`` is "int", "float", "choice" or "ints"
    (``length`` whole numbers, each in ``[minimum, maximum]``, such as a 3D kernel size; the demo shows
    them as text, "3, 9, 9")."""

    name: str
    label: str
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    info: str = ""
    length: int = 3

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ConfigError(f"field {self.name!r}: kind must be one of {', '.join(FIELD_KINDS)}, got {self.kind!r}")
        if self.kind == "ints" and (self.minimum is None or self.maximum is None or self.length < 1):
            raise ConfigError(f"field {self.name!r}: an 'ints' field needs bounds and a length of at least 1")

    def coerce(self, value: Any) -> Any:
        """The value in the config's type; a ConfigError with a readable message otherwise."""
        if self.kind == "ints":
            return self._coerce_ints(value)
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

    def _coerce_ints(self, value: Any) -> tuple[int, ...]:
        """``length`` whole numbers from a tuple or list, or from text such as "3, 9, 9", "3x9x9" or "(3, 9, 9)"."""
        parts: list[Any] | None = None
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            parts = [p for p in text.replace("x", ",").replace(" ", ",").split(",") if p]
        elif isinstance(value, (tuple, list)):
            parts = list(value)
        if parts is None or len(parts) != self.length:
            example = ", ".join(["3"] * self.length)
            wanted = f"{self.length} whole numbers such as {example}"
            raise ConfigError(f"{self.label}: expected {wanted}, got {brief(value)}")
        single = dataclasses.replace(self, kind="int")
        return tuple(single.coerce(part) for part in parts)


def _is_number(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class Gene:
    """One ``accel tune`` gene: a knob and the values the search may give it."""

    name: str
    choices: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class TuneTarget:
    """What ``accel tune`` knows of the call it tunes, for a plugin's ``fits``: the video token grid
    (frames, rows, columns; None: unknown or not a video) and whether the sampler is flow matching."""

    grid: tuple[int, int, int] | None = None
    flow_matching: bool = False


@dataclasses.dataclass(frozen=True)
class PluginFacts:
    """A plugin's facts (see the module docstring).

    Attributes:
        key: the plugin's name in the demo (panels, the JSON API's ``plugins``) and in ``accel tune``'s
            genes (``deepcache.interval``).
        title, blurb: the demo panel's heading and one-line description.
        fields: the config fields the demo lets users edit (empty: no demo panel).
        presets: ``{"safe" | "balanced" | "fast": field values}``.
        identity: field values that make the plugin a no-op (its outputs equal the baseline's).
        genes: ``accel tune``'s knobs for this plugin (empty: not searched).
        build: ``(knob values, step count) -> config`` for a genome (None: the genes are a mode of
            another plugin's group, as LinearAG's are of adaptive guidance's).
        fits: ``(config, TuneTarget) -> bool``: whether a gene choice's config is worth searching on the
            tuned call (its video token grid, its sampler; None: every choice is); ``accel tune`` leaves
            out the choices that do not fit.
        needs_cfg: the plugin acts on classifier-free guidance, so ``accel tune`` searches it only where
            the tuned call uses CFG.
        sweep: ``{built-in model: [grid entries]}`` of the default ``accel eval`` sweep.
        conflicts: ``{other plugin's name: reason}`` for pairs that cannot be combined although they
            claim different resources (the shared-resource conflicts follow from ``Plugin.claims``).
        order: position among the plugins in the demo, the tune genome and the sweep.
    """

    key: str
    title: str
    blurb: str = ""
    fields: tuple[Field, ...] = ()
    presets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    identity: dict[str, Any] = dataclasses.field(default_factory=dict)
    genes: tuple[Gene, ...] = ()
    build: Callable[[dict[str, Any], int], Any] | None = None
    fits: Callable[[Any, TuneTarget], bool] | None = None
    needs_cfg: bool = False
    sweep: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    conflicts: dict[str, str] = dataclasses.field(default_factory=dict)
    order: int = 100

    def __post_init__(self) -> None:
        if self.fields and set(self.presets) != set(PRESET_NAMES):
            raise ConfigError(f"{self.title}: a demo panel needs the presets {list(PRESET_NAMES)}")


def plugins_with_facts() -> list[Any]:
    """The registered plugin classes that declare facts, in their ``order``."""
    from .plugin import registered_plugins

    return sorted((p for p in registered_plugins() if p.facts is not None), key=lambda p: (p.facts.order, p.name))
