"""Base class and validation helpers for plugin configs.

Every plugin is configured by a frozen dataclass validated in ``__post_init__``. Configs are never
mutated by accel; ``str(config)`` is a stable short name usable as a folder name in evaluations.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from typing import Any, ClassVar

from .errors import ConfigError
from .files import brief


@dataclasses.dataclass(frozen=True)
class PluginConfig:
    """Base of every plugin config. Subclasses are frozen dataclasses.

    ``short_prefix`` names the method in run names; ``str(config)`` appends the fields that differ
    from their defaults, e.g. ``deepcache_interval3``.
    """

    short_prefix: ClassVar[str] = "plugin"
    #: fields holding file paths (coefficients, schedules, plans): a tuned plan stores them relative to
    #: its own folder
    path_fields: ClassVar[tuple[str, ...]] = ()

    def __str__(self) -> str:
        parts = [self.short_prefix]
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            default = field.default if field.default is not dataclasses.MISSING else None
            if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = field.default_factory()  # type: ignore[misc]
            if value == default:
                continue
            parts.append(f"{_short_key(field.name)}{_short_value(value)}")
        return "_".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict with a ``type`` key naming the config class."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for field in dataclasses.fields(self):
            out[field.name] = _jsonable(getattr(self, field.name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PluginConfig:
        """Inverse of :meth:`to_dict` for this class (the ``type`` key is optional)."""
        data = dict(data)
        data.pop("type", None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {brief(unknown)}; allowed fields are {sorted(names)}")
        for field in dataclasses.fields(cls):
            if field.name in data and isinstance(data[field.name], list):
                data[field.name] = _tupleize(data[field.name])
        return cls(**data)

    def replace(self, **changes: Any) -> PluginConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _short_key(name: str) -> str:
    return "".join(word[:1] for word in name.split("_")) if len(name) > 12 else name.replace("_", "")


def _short_value(value: Any) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "-".join(_short_value(v) for v in value) if len(value) <= 6 else f"n{len(value)}"
    if value is None:
        return "None"
    return str(value).replace("/", "-").replace(" ", "")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _tupleize(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupleize(v) for v in value)
    return value


def check_int(
    owner: str, name: str, value: Any, low: int | None = None, high: int | None = None, allow_none: bool = False
) -> None:
    """Raise ConfigError unless ``value`` is an int in [low, high] (None allowed if ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{owner}.{name} must be an integer{_range_text(low, high)}, got {brief(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{owner}.{name} must be an integer{_range_text(low, high)}, got {value}")


def check_float(
    owner: str,
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    allow_none: bool = False,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """Raise ConfigError unless ``value`` is a finite number within the given bounds."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(
            f"{owner}.{name} must be a finite number{_range_text(low, high, low_inclusive, high_inclusive)}, got "
            f"{brief(value)}"
        )
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        raise ConfigError(
            f"{owner}.{name} must be a number{_range_text(low, high, low_inclusive, high_inclusive)}, got {value}"
        )


def check_choice(owner: str, name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``, of the same type (``64.0`` is not ``64``)."""
    choices = tuple(choices)
    if not any(value == c and type(value) is type(c) for c in choices):
        raise ConfigError(f"{owner}.{name} must be one of {list(choices)}, got {brief(value)}")


def check_int_tuple(owner: str, name: str, value: Any, low: int | None = None, high: int | None = None) -> None:
    """Raise ConfigError unless ``value`` is a tuple of ints in [low, high]."""
    if not isinstance(value, tuple):
        raise ConfigError(f"{owner}.{name} must be a tuple of integers{_range_text(low, high)}, got {brief(value)}")
    for item in value:
        check_int(owner, name + "[]", item, low, high)


def _range_text(low: Any, high: Any, low_inclusive: bool = True, high_inclusive: bool = True) -> str:
    if low is None and high is None:
        return ""
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    return f" in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


def dumps(config: PluginConfig) -> str:
    """JSON text of a config (``type`` included)."""
    return json.dumps(config.to_dict(), sort_keys=True)


# ------------------------------------------------------------------ data files (plans, coefficients)
def field_of(owner: str, data: Any, key: str, required: bool = True, default: Any = None) -> Any:
    """``data[key]`` of a mapping read from a file; ConfigError naming ``owner.key`` when ``data`` is not
    a mapping or a required key is missing."""
    if not isinstance(data, dict):
        raise ConfigError(f"{owner} must be a mapping, got {type(data).__name__}")
    if key not in data:
        if required:
            raise ConfigError(f"{owner}.{key} is missing")
        return default
    return data[key]


def check_str(owner: str, name: str, value: Any, allow_none: bool = False, max_len: int = 10_000) -> None:
    """Raise ConfigError unless ``value`` is a non-empty string of at most ``max_len`` characters."""
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ConfigError(f"{owner}.{name} must be a non-empty string, got {brief(value)}")


def check_number_list(owner: str, name: str, value: Any, length: int | None = None) -> None:
    """Raise ConfigError unless ``value`` is a list of finite numbers (of ``length`` items if given)."""
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        wanted = "a list of finite numbers" if length is None else f"a list of {length} finite numbers"
        raise ConfigError(f"{owner}.{name} must be {wanted}, got {brief(value)}")
    for index, item in enumerate(value):
        check_float(owner, f"{name}[{index}]", item)
