"""Exceptions raised by accel. Every message says what was wrong and what is allowed."""

from __future__ import annotations


class AccelError(Exception):
    """Base class of every error accel raises on purpose."""


class UnsupportedModelError(AccelError, TypeError):
    """The target is not a model family accel (or the requested plugin) supports."""


class ConfigError(AccelError, ValueError):
    """A config field, sweep spec, argument or file content is outside its allowed range or set of values."""


class IncompatiblePluginsError(AccelError, ValueError):
    """Two plugin configs cannot be attached together; the message says why."""


class MissingContextError(AccelError, RuntimeError):
    """A plugin needs denoising-loop information (step index, step count) that is not available."""


class InvalidInputError(AccelError, TypeError):
    """An argument has a type accel cannot use; the message names the accepted types."""


class NotFoundError(AccelError, FileNotFoundError):
    """A file, folder, set of weights or prompt set the user named does not exist."""


class StateError(AccelError, RuntimeError):
    """The call cannot run in the current state (plugins already attached, nothing observed yet, a
    cache that a step needs is empty); the message says what to do first."""


class ConcurrentUseError(StateError):
    """An accelerated pipeline or denoiser was entered from a second thread while a generation was
    running in another: accel's per-generation state belongs to one generation at a time."""


class OutOfSpaceError(AccelError, OSError):
    """The disk filled up while accel wrote a file; the message names the file and the space left."""


class OutOfMemoryError(AccelError, MemoryError):
    """A requested size (image side, frames, batch) did not fit in memory; the message names the size."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator failure: CUDA's ``torch.OutOfMemoryError``, a CPU allocation
    ``RuntimeError`` or a ``MemoryError``."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or "can't allocate memory" in text)
    )
