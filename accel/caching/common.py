"""Shared pieces of the caching plugins: the cached-output state and the step-pattern picture."""

from __future__ import annotations

from typing import Any

from diffusers.hooks.hooks import BaseState


class CachedOutput(BaseState):
    """Per-hook state of a caching plugin: the last computed output and the batch it was computed for."""

    def __init__(self) -> None:
        self.output: Any = None
        self.batch: int | None = None

    def reset(self) -> None:
        self.output = None
        self.batch = None


def step_pattern(full: list[bool]) -> str:
    """A compact picture of a per-step schedule: ``F`` computed, ``.`` cached."""
    return "".join("F" if f else "." for f in full)
