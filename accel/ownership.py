"""Which thread owns a pipeline's accel state: one generation at a time, taken atomically.

accel keeps one generation's state per pipeline, so two threads must never interleave on it. The
first thread to enter takes ownership under a lock and keeps it while its pipeline ``__call__`` is
on its stack (a bare denoiser: until its generation ends); every other thread is refused with
:class:`~accel.errors.ConcurrentUseError`, and its refusal touches nothing. ``apply`` / ``remove`` /
``reset`` hold the state exclusively.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .errors import ConcurrentUseError


class ThreadOwnership:
    """The owner of one denoising context.

    Args:
        pipeline: returns the pipeline the context serves (None for a bare denoiser).
        busy: whether a generation is under way (how a bare denoiser's owner is judged active).
        forget: resets the loop state; called under the lock when a stale owner is replaced.
    """

    def __init__(self, pipeline: Callable[[], Any], busy: Callable[[], bool], forget: Callable[[], None]) -> None:
        self._pipeline = pipeline
        self._busy = busy
        self._forget = forget
        self._lock = threading.Lock()
        self._owner: threading.Thread | None = None
        self._exclusive = False  # an apply / remove / reset holds the context

    def claim(self) -> None:
        """Make the calling thread the owner, or raise :class:`ConcurrentUseError`.

        Of several threads entering at once exactly one passes; a previous owner whose call is over
        (or failed) is replaced, and the loop state forgotten."""
        me = threading.current_thread()
        with self._lock:
            owner = self._owner
            if owner is me:
                return
            if owner is not None and self._active(owner):
                raise self._refusal(owner)
            if owner is not None:
                self._forget()
            self._owner = me

    @contextlib.contextmanager
    def exclusive(self, action: str) -> Iterator[None]:
        """Hold the context for ``action`` (apply, remove, reset): refused while another thread generates
        (or the calling thread is inside its own generation, e.g. in a step callback), and every
        generation that starts meanwhile is refused."""
        me = threading.current_thread()
        with self._lock:
            owner = self._owner
            if owner is not None and owner is not me and self._active(owner):
                raise self._refusal(owner)
            if owner is me and self._inside_pipeline_call(me):
                raise ConcurrentUseError(
                    f"accel.{action} was called during a generation of this pipeline (from a step callback?); "
                    "call it between generations"
                )
            self._owner, self._exclusive = me, True
        try:
            yield
        finally:
            with self._lock:
                self._owner, self._exclusive = None, False

    def abort(self) -> None:
        """The owner's generation failed: forget it and let go. A non-owner's abort does nothing."""
        with self._lock:
            if self._owner not in (None, threading.current_thread()):
                return
            self._forget()
            self._owner = None

    def release_after_bare_generation(self) -> None:
        """A bare denoiser's owner lets go when its generation ends (a pipeline's keeps the context
        until its call returns)."""
        if call_code(self._pipeline()) is not None:
            return
        with self._lock:
            if self._owner is threading.current_thread():
                self._owner = None

    def _active(self, owner: threading.Thread) -> bool:
        """Whether ``owner`` still holds the context: alive and, with a pipeline, inside its call."""
        if not owner.is_alive():
            return False
        if self._exclusive:
            return True
        if call_code(self._pipeline()) is None:
            return self._busy()
        return self._inside_pipeline_call(owner)

    def _inside_pipeline_call(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` has the pipeline's ``__call__`` frame on its stack."""
        pipe = self._pipeline()
        code = call_code(pipe)
        frame = sys._current_frames().get(thread.ident) if code is not None else None
        while frame is not None:
            if frame.f_code is code and frame.f_locals.get("self") is pipe:
                return True
            frame = frame.f_back
        return False

    def _refusal(self, owner: threading.Thread) -> ConcurrentUseError:
        pipe = self._pipeline()
        target = type(pipe).__name__ if pipe is not None else "denoiser"
        doing = "is being changed (accel.apply / remove / reset)" if self._exclusive else "is generating"
        return ConcurrentUseError(
            f"this accelerated {target} {doing} in thread {owner.name!r}; accel keeps one generation's "
            "state per pipeline, so two threads cannot share it. Give each worker its own copy with "
            "accel.replicate(pipe) (weights are shared, not copied), or serialise the calls with a lock."
        )


def call_code(pipe: Any) -> Any:
    """The code object of ``type(pipe).__call__`` under its decorators (``torch.no_grad``), or None."""
    if pipe is None:
        return None
    call = next((c.__dict__["__call__"] for c in type(pipe).__mro__ if "__call__" in c.__dict__), None)
    return getattr(inspect.unwrap(call), "__code__", None) if call is not None else None
