"""How accel's hooks live with ``torch.compile``.

Every per-step decision (which step this is, compute or reuse, which rows run, which tokens stay)
is Python bookkeeping that changes from step to step. Traced by dynamo it would become a guard, and
each new step a new graph. So accel splits every hook in two:

* the hook's entry (:func:`hook_entry`) is a frame dynamo skips, while the module it wraps, which it
  calls, is still compiled as a frame of its own (with the user's backend and options);
* everything else the hook does, deciding and recording, is :func:`eager` and never traced.

The compiled graphs then hold only the model's own computation, so their number does not grow with
the steps; tensors a plugin hands to the model (cached features, token indices) are graph inputs.
See ``docs/compile.md`` for the recipes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from diffusers.hooks import ModelHook

if TYPE_CHECKING:
    from .context import DenoisingContext

F = TypeVar("F", bound=Callable)


def hook_entry(method: F) -> F:
    """A hook method that runs eagerly but lets ``torch.compile`` compile the module it calls.

    It must call nothing but :func:`eager` functions, tensor operations and the wrapped forward:
    any other Python function it calls would be compiled as a frame of its own."""
    return torch.compiler.disable(method, recursive=False)  # type: ignore[return-value]


def eager(method: F) -> F:
    """Bookkeeping that ``torch.compile`` never traces (it runs as plain Python, with its callees)."""
    return torch.compiler.disable(method)  # type: ignore[return-value]


class DecidingHook(ModelHook):
    """A hook that decides each call eagerly, runs the wrapped module (compiled, if the user compiles),
    and records eagerly. Subclasses give two :func:`eager` methods:

    * ``_decide(args, kwargs)`` returns a decision with ``output`` (set: return it, the module does not
      run) and the ``args``/``kwargs`` to run the module on otherwise;
    * ``_record(decision, output)`` records what ran and returns what the caller gets.

    The step a call belongs to is read from ``self.context`` (a
    :class:`~accel.context.DenoisingContext`) inside ``_decide``, never in the traced entry.
    """

    def __init__(self, context: DenoisingContext) -> None:
        super().__init__()
        self.context = context

    @hook_entry
    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        decision = self._decide(args, kwargs)
        if decision.output is not None:
            return decision.output
        return self._record(decision, self.fn_ref.original_forward(*decision.args, **decision.kwargs))
