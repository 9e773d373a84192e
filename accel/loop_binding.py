"""How accel sees a pipeline's denoising loop without touching any class: instance-attribute
overrides of ``pipe.check_inputs`` (the first thing a diffusers pipeline call does), of
``pipe.prepare_latents`` and of the scheduler's ``set_timesteps``, ``set_begin_index`` and ``step``.
Each override calls a handler with the original method; removing them restores the instances exactly.
A scheduler swapped by the user is followed on the next call (:meth:`follow`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .errors import StateError

#: ``handler(original, *args, **kwargs)``: runs instead of ``original`` and calls it.
Handler = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class LoopHandlers:
    """What runs around each overridden method."""

    check_inputs: Handler
    prepare_latents: Handler
    set_timesteps: Handler
    set_begin_index: Handler
    step: Handler


class LoopBinding:
    """The overrides one denoising context installed on a pipeline and its scheduler."""

    def __init__(self, handlers: LoopHandlers) -> None:
        self._handlers = handlers
        self._wrapped: list[tuple[Any, str]] = []
        self.scheduler: Any = None

    def bind(self, pipe: Any) -> None:
        """Override ``pipe.check_inputs`` and ``pipe.prepare_latents`` (where they exist) and the scheduler's
        loop methods."""
        for name in ("check_inputs", "prepare_latents"):
            if hasattr(pipe, name):
                self._wrap(pipe, name, getattr(self._handlers, name))
        self.follow(getattr(pipe, "scheduler", None))

    def follow(self, scheduler: Any) -> None:
        """Move the scheduler overrides to ``scheduler`` (the pipeline's may have been swapped)."""
        if scheduler is None or scheduler is self.scheduler:
            return
        kept = []
        for owner, name in self._wrapped:
            if owner is self.scheduler:
                owner.__dict__.pop(name, None)
            else:
                kept.append((owner, name))
        self._wrapped = kept
        self.scheduler = scheduler
        self._wrap(scheduler, "set_timesteps", self._handlers.set_timesteps)
        if hasattr(scheduler, "set_begin_index"):
            self._wrap(scheduler, "set_begin_index", self._handlers.set_begin_index)
        self._wrap(scheduler, "step", self._handlers.step)

    def unbind(self) -> None:
        """Remove every override (the instances' own methods show through again)."""
        for owner, name in reversed(self._wrapped):
            owner.__dict__.pop(name, None)
        self._wrapped.clear()
        self.scheduler = None

    def _wrap(self, owner: Any, name: str, handler: Handler) -> None:
        if name in owner.__dict__:
            raise StateError(
                f"{type(owner).__name__}.{name} is already overridden on this instance; "
                "accel will not wrap it twice (is another accel handle attached?)"
            )
        original = getattr(owner, name)
        owner.__dict__[name] = _Override(handler, original)
        self._wrapped.append((owner, name))


class _Override:
    """accel's override of a pipeline or scheduler method (an instance attribute). A deep copy of the
    pipeline would copy it still bound to the original's loop context, so copying is refused."""

    def __init__(self, handler: Handler, original: Callable) -> None:
        self._handler = handler
        self.__wrapped__ = original

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._handler(self.__wrapped__, *args, **kwargs)

    def __deepcopy__(self, memo: dict) -> Any:
        raise copy_refused()


def copy_refused() -> StateError:
    """Why a pipeline (or denoiser) with accel attached cannot be deep-copied."""
    return StateError(
        "copy.deepcopy of a pipeline with accel attached would share its accel state with the original; "
        "use accel.replicate(pipe) for an independent accelerated copy, or accel.remove(pipe) before copying"
    )
