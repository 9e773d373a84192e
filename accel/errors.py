"""Exceptions raised by accel. Every message says what was wrong and what is allowed."""

from __future__ import annotations


class AccelError(Exception):
    """Base class of every error accel raises on purpose."""


class UnsupportedModelError(AccelError, TypeError):
    """The target is not a model family accel (or the requested plugin) supports."""


class ConfigError(AccelError, ValueError):
    """A plugin config field is outside its allowed range or set of values."""


class IncompatiblePluginsError(AccelError, ValueError):
    """Two plugin configs cannot be attached together; the message says why."""


class MissingContextError(AccelError, RuntimeError):
    """A plugin needs denoising-loop information (step index, step count) that is not available."""
