"""Per-denoiser bookkeeping: the hooks accel registered, in order, and how to take them off.

A :class:`DenoiserSession` owns every modification accel makes to one denoiser. Plugins register
hooks through :meth:`DenoiserSession.register_hook` (diffusers' ``HookRegistry``) and record any
other change with :meth:`DenoiserSession.add_restorer`; :meth:`DenoiserSession.remove` undoes all of
it in reverse order and leaves the module as it was (no ``forward`` override, no empty registry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import BaseState, CacheContext, StateManager, _set_cache_context

from .compiling import eager, hook_entry
from .context import DenoisingContext, main_input
from .errors import StateError
from .pipelines.registry import Adapter

CONTEXT_HOOK = "accel_context"
COUNTER_HOOK = "accel_counter"


class _NoState(BaseState):
    def reset(self, *args: Any, **kwargs: Any) -> None:
        pass


class ContextHook(ModelHook):
    """Outermost hook on a denoiser: asks the context where the loop is and publishes it.

    The pipeline's own ``cache_context(name)`` (Wan, Flux, ...) reaches this hook's
    ``StateManager`` and names the branch; the hook then sets a diffusers ``CacheContext`` with the
    step on every stateful hook below it, ours and diffusers' own caches alike.
    """

    _is_stateful = True

    def __init__(self, context: DenoisingContext) -> None:
        super().__init__()
        self.context = context
        self.pipeline_context = StateManager(_NoState)

    @hook_entry
    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        try:
            outer = self._enter(module, args, kwargs)
        except BaseException:
            self.context.abort()
            raise
        try:
            return self.fn_ref.original_forward(*args, **kwargs)
        except BaseException:
            self.context.abort()
            raise
        finally:
            self._exit(module, outer)

    @eager
    def _enter(self, module: nn.Module, args: tuple, kwargs: dict) -> CacheContext | None:
        outer = self.pipeline_context._context
        info = self.context.begin_call(args, kwargs, outer.name if outer is not None else None)
        _set_cache_context(
            module,
            CacheContext(
                name=info.branch,
                step_index=info.step_index,
                num_inference_steps=info.num_inference_steps,
                timestep=info.timestep,
            ),
        )
        return outer

    @eager
    def _exit(self, module: nn.Module, outer: CacheContext | None) -> None:
        _set_cache_context(module, outer)
        self.context.end_call()

    def reset_state(self, module: nn.Module) -> nn.Module:
        return module  # the loop position is the context's, not per-generation hook state

    def __deepcopy__(self, memo: dict) -> Any:
        raise StateError(
            "copy.deepcopy of a denoiser with accel attached would share its accel state with the original; "
            "use accel.replicate(pipe_or_denoiser) for an independent accelerated copy, or accel.remove first"
        )


class CounterHook(ModelHook):
    """Innermost hook on a denoiser: counts the evaluations that really run (NFEs)."""

    def __init__(self, context: DenoisingContext) -> None:
        super().__init__()
        self.context = context

    @hook_entry
    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        self._count(args, kwargs)
        return self.fn_ref.original_forward(*args, **kwargs)

    @eager
    def _count(self, args: tuple, kwargs: dict) -> None:
        x = main_input(args, kwargs)
        self.context.count_evaluation(int(x.shape[0]) if x is not None else 1)


class DenoiserSession:
    """Everything accel attached to one denoiser."""

    def __init__(self, name: str, denoiser: nn.Module, adapter: Adapter, context: DenoisingContext) -> None:
        self.name = name
        self.denoiser = denoiser
        self.adapter = adapter
        self.context = context
        self.plugins: list[Any] = []
        self._hooks: list[tuple[nn.Module, str]] = []
        self._restorers: list[Callable[[], None]] = []
        self._had_registry: dict[int, bool] = {}
        self._had_forward: dict[int, bool] = {}
        self._uses_context = adapter.kind != "vit"
        self._callbacks_installed = False

    # ------------------------------------------------------------------ registration
    def register_hook(self, module: nn.Module, hook: ModelHook, name: str) -> None:
        """Register ``hook`` on ``module`` under ``name``; remembered for removal and rollback."""
        key = id(module)
        if key not in self._had_registry:
            self._had_registry[key] = hasattr(module, "_diffusers_hook")
            self._had_forward[key] = "forward" in module.__dict__
        registry = HookRegistry.check_if_exists_or_initialize(module)
        registry.register_hook(hook, name)
        self._hooks.append((module, name))

    def add_restorer(self, restore: Callable[[], None]) -> None:
        """Remember a callable that undoes a change that is not a hook (e.g. a swapped processor)."""
        self._restorers.append(restore)

    def swap_processor(self, attention: nn.Module, processor: Any) -> Any:
        """Put ``processor`` on an attention module; on removal the original comes back, carrying the
        attention backend and parallel config set while the swap was on (``set_attention_backend``
        after ``accel.apply`` reached the swapped-in processor, not the original). Returns the original."""
        original = attention.processor
        attention.set_processor(processor)

        def restore() -> None:
            for name in ("_attention_backend", "_parallel_config"):
                if hasattr(processor, name):
                    setattr(original, name, getattr(processor, name))
            attention.set_processor(original)

        self.add_restorer(restore)
        return original

    def hooks(self) -> list[tuple[nn.Module, str]]:
        return list(self._hooks)

    # ------------------------------------------------------------------ context hooks
    def install_context(self) -> None:
        """Put the counter hook innermost (first call only) and the context hook outermost."""
        if not self._uses_context:
            return
        if not self._callbacks_installed:
            self.context.on_generation_start(self._on_generation_start)
            self.context.on_generation_end(self._on_generation_end)
            self._callbacks_installed = True
        registry = getattr(self.denoiser, "_diffusers_hook", None)
        if registry is None or registry.get_hook(COUNTER_HOOK) is None:
            self.register_hook(self.denoiser, CounterHook(self.context), COUNTER_HOOK)

    def finish_install(self) -> None:
        """(Re-)register the context hook so that it is the outermost hook on the denoiser."""
        if not self._uses_context:
            return
        registry = HookRegistry.check_if_exists_or_initialize(self.denoiser)
        if registry.get_hook(CONTEXT_HOOK) is not None:
            registry.remove_hook(CONTEXT_HOOK, recurse=False)
            self._hooks = [(m, n) for (m, n) in self._hooks if not (m is self.denoiser and n == CONTEXT_HOOK)]
        self.register_hook(self.denoiser, ContextHook(self.context), CONTEXT_HOOK)
        registry.invalidate_child_registries_cache()

    def _on_generation_start(self) -> None:
        self.reset_state()
        for plugin in self.plugins:
            plugin.on_generation_start()

    def _on_generation_end(self) -> None:
        for plugin in self.plugins:
            plugin.on_generation_end()
        self.reset_state()

    def reset_state(self) -> None:
        """Reset every stateful hook on the denoiser (ours and diffusers' own)."""
        if hasattr(self.denoiser, "_diffusers_hook"):
            self.denoiser._diffusers_hook.reset_stateful_hooks(recurse=True)

    # ------------------------------------------------------------------ removal
    def remove(self) -> None:
        """Undo every change in reverse order and leave the module exactly as before."""
        errors: list[BaseException] = []
        for plugin in reversed(self.plugins):
            try:
                plugin.detach()
            except BaseException as exc:  # keep undoing the rest
                errors.append(exc)
        self.plugins.clear()
        for module, name in reversed(self._hooks):
            registry = getattr(module, "_diffusers_hook", None)
            if registry is not None and registry.get_hook(name) is not None:
                registry.remove_hook(name, recurse=False)
        for restore in reversed(self._restorers):
            try:
                restore()
            except BaseException as exc:
                errors.append(exc)
        self._restorers.clear()
        touched = {id(m): m for m, _ in self._hooks}
        self._hooks.clear()
        for key, module in touched.items():
            _tidy_module(module, self._had_registry.get(key, True), self._had_forward.get(key, True))
        if hasattr(self.denoiser, "_diffusers_hook"):
            self.denoiser._diffusers_hook.invalidate_child_registries_cache()
        if self._callbacks_installed:
            self.context.remove_callbacks(self._on_generation_start, self._on_generation_end)
            self._callbacks_installed = False
        if errors:
            raise errors[0]


def _tidy_module(module: nn.Module, had_registry: bool, had_forward: bool) -> None:
    """Drop the empty registry and the instance-level ``forward`` that the hook registry leaves behind."""
    registry = getattr(module, "_diffusers_hook", None)
    if registry is None or registry.hooks:
        return
    if not had_registry:
        del module._diffusers_hook
    if not had_forward and "forward" in module.__dict__:
        forward = module.__dict__["forward"]
        if getattr(forward, "__self__", None) is module and getattr(forward, "__func__", None) is type(module).forward:
            del module.__dict__["forward"]
