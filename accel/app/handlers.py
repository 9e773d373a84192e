"""Plain functions as Gradio event handlers: readable errors, and arguments bound by keyword.

Every handler of the demo goes through :func:`errors_readable` (a user-fixable :class:`AppError`
becomes a ``gr.Error`` with its message, anything else a one-line error with the traceback in the
server log), and handlers that need the model registry, the limits or the ViT pair get them from
:func:`bind` as keyword-only arguments.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from .models import AppError, one_line

log = logging.getLogger("accel.app.app")  # the logger the handlers have always used


def errors_readable(fn: Callable) -> Callable:
    """Turn exceptions into ``gr.Error`` with a readable message (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except AppError as exc:
            raise gr.Error(str(exc), title="Cannot do that") from None
        except Exception as exc:  # noqa: BLE001
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"unexpected error: {one_line(exc)}", title="Error") from None

    return wrapper


def bind(fn: Callable, **bound: Any) -> Callable:
    """``fn`` with the keyword-only arguments ``bound`` fixed, keeping its name and docstring.

    Gradio reads the remaining signature (inputs, ``gr.Progress`` defaults) through the partial and
    names private endpoints after ``__name__``, so the bound handler looks like ``fn`` to it.
    """
    partial = functools.partial(fn, **bound)
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(partial, attr, getattr(fn, attr))
    return partial


def handler(fn: Callable, **bound: Any) -> Callable:
    """``fn`` as a UI event handler: ``bound`` keyword arguments fixed, errors readable, no API-page description.

    Gradio shows an event handler's docstring as its endpoint's description on the API page; the UI
    endpoints have none there (only ``generate_json``, a documented API function, has one).
    """
    wrapped = errors_readable(bind(fn, **bound) if bound else fn)
    wrapped.__doc__ = None
    return wrapped
