"""The public entry points: ``apply``, ``remove``, ``summary``.

``accel.apply(target, *configs)`` resolves the target (a diffusers pipeline, a denoiser or a timm
model) to its denoiser(s), finds each denoiser's architecture adapter, checks every config against
the adapter and against each other, then attaches the plugins in one transaction: if anything
fails, everything registered so far is removed again and the model is left untouched.
"""

from __future__ import annotations

import copy
import threading
import warnings
import weakref
from collections.abc import Iterable
from typing import Any

import torch.nn as nn

from . import compat
from .config import PluginConfig
from .context import DenoisingContext
from .errors import ConfigError, NotFoundError, StateError, UnsupportedModelError
from .pipelines.registry import Adapter, find, lookup, unwrap
from .plugin import plugin_for
from .session import DenoiserSession
from .summary import Summary

#: Pipeline attributes that may hold a denoiser, in the order they are attached.
DENOISER_ATTRIBUTES = ("unet", "transformer", "transformer_2", "transformer_3", "prior")

_HANDLES: weakref.WeakKeyDictionary[Any, AccelHandle] = weakref.WeakKeyDictionary()
#: Serialises apply / remove across threads (each also holds the target's loop context, see
#: ``DenoisingContext.exclusive``, so that no generation runs on a half-changed pipeline).
_API_LOCK = threading.RLock()


class AccelHandle:
    """What ``accel.apply`` returns: the attached plugins of one target, and how to remove them."""

    def __init__(self, target: Any, context: DenoisingContext, sessions: list[DenoiserSession]) -> None:
        self._target_ref = weakref.ref(target)
        self.context = context
        self.sessions = sessions
        self.configs: list[PluginConfig] = []

    @property
    def target(self) -> Any:
        return self._target_ref()

    def remove(self) -> None:
        """Remove every plugin and hook; the model is restored exactly."""
        accel_remove(self.target)

    def summary(self) -> Summary:
        return summary(self.target)

    def reset(self) -> None:
        """Forget the loop position (bare denoisers): the next call starts a new generation."""
        self.context.reset()

    def __repr__(self) -> str:
        configs = ", ".join(str(c) for c in self.configs) or "no plugins"
        return f"AccelHandle({type(self.target).__name__}: {configs})"


def apply(
    target: Any,
    *configs: PluginConfig | Iterable[PluginConfig],
    num_inference_steps: int | None = None,
    cfg_stacked: bool | None = None,
) -> AccelHandle:
    """Attach plugins to ``target`` and return a handle.

    Args:
        target: a ``DiffusionPipeline``, a denoiser (``UNet2DConditionModel``, a diffusers
            transformer) or a timm ``VisionTransformer``.
        *configs: plugin configs (``accel.DeepCacheConfig(...)``, ...), or lists of them.
        num_inference_steps: only for a bare denoiser that you call yourself: the number of steps
            of each generation (each call counts as one step). Pipelines report it themselves.
        cfg_stacked: only for a bare denoiser: whether your batches stack ``[uncond, cond]``.

    Calling ``apply`` again on the same target adds plugins to those already attached.
    """
    flat = _flatten(configs)
    denoisers = _resolve(target)
    with _API_LOCK:
        handle = _HANDLES.get(target)
        _check_not_owned_elsewhere(denoisers, handle)
        compat.check_compatible((handle.configs if handle else []) + flat)
        is_pipeline = not isinstance(target, nn.Module)
        adapters = {name: lookup(module) for name, module in denoisers}
        _say_discovered(adapters.values())
        for name, _ in denoisers:
            for config in flat:
                plugin_for(config).check(adapters[name], config, has_pipeline=is_pipeline)

        created = handle is None
        if handle is None:
            handle = _new_handle(target, denoisers, adapters, is_pipeline, num_inference_steps, cfg_stacked)
        with handle.context.exclusive("apply"):
            if not created:
                _update_loop_hints(handle.context, num_inference_steps, cfg_stacked)
            _attach_all(handle, flat, created)
        handle.configs.extend(flat)
        _HANDLES[target] = handle
        for _, module in denoisers:
            _HANDLES[module] = handle
    return handle


_ANNOUNCED: set[str] = set()


def _say_discovered(adapters: Iterable[Adapter]) -> None:
    """Say once per class that a denoiser's blocks were discovered automatically (no hand-written adapter)."""
    for adapter in adapters:
        if adapter.discovered and adapter.family not in _ANNOUNCED:
            _ANNOUNCED.add(adapter.family)
            blocks = ", ".join(f"{s.block_class}: {[c.attr for c in s.components]}" for s in adapter.block_specs)
            warnings.warn(
                f"accel: {adapter.title}: no hand-written adapter; blocks discovered automatically under "
                f"{list(adapter.block_lists)} ({blocks}). BlockCache and adaptive guidance work on it; RAS and "
                "sparse attention need a hand-written adapter",
                UserWarning,
                stacklevel=3,
            )


def _check_not_owned_elsewhere(denoisers: list[tuple[str, Any]], handle: AccelHandle | None) -> None:
    """Refuse a denoiser that already carries plugins attached through another target."""
    for name, module in denoisers:
        owner = _HANDLES.get(module)
        if owner is not None and owner is not handle:
            raise UnsupportedModelError(
                f"{name} already has accel plugins attached through another target; "
                "call accel.remove on that target first"
            )


def _new_handle(
    target: Any,
    denoisers: list[tuple[str, Any]],
    adapters: dict[str, Adapter],
    is_pipeline: bool,
    num_inference_steps: int | None,
    cfg_stacked: bool | None,
) -> AccelHandle:
    """A handle with one shared loop context and one session per denoiser (nothing attached yet)."""
    first_adapter = adapters[denoisers[0][0]]
    context = DenoisingContext(
        pipeline=target if is_pipeline else None,
        num_inference_steps=num_inference_steps,
        cfg_stacked=cfg_stacked,
        cfg_order=first_adapter.cfg_order,
        detect_cfg=first_adapter.detect_cfg_stacked,
    )
    sessions = [DenoiserSession(name, module, adapters[name], context) for name, module in denoisers]
    return AccelHandle(target, context, sessions)


def _update_loop_hints(context: DenoisingContext, num_inference_steps: int | None, cfg_stacked: bool | None) -> None:
    """A later ``apply`` may give the bare-denoiser hints again; unset ones keep their earlier values."""
    if num_inference_steps:
        context.user_num_inference_steps = num_inference_steps
    if cfg_stacked is not None:
        context.user_cfg_stacked = cfg_stacked


def _attach_all(handle: AccelHandle, flat: list[PluginConfig], created: bool) -> None:
    """Attach ``flat`` to every session; on any failure leave the target as it was before this call."""
    attached: list[tuple[DenoiserSession, Any]] = []
    try:
        if created:
            handle.context.bind_pipeline()
        for session in handle.sessions:
            session.install_context()
            for config in flat:
                plugin = plugin_for(config)(config, session)
                session.plugins.append(plugin)
                attached.append((session, plugin))
                plugin.attach()
            session.finish_install()
    except BaseException:
        if created:
            for session in handle.sessions:
                session.remove()
            handle.context.unbind_pipeline()
        else:
            _rollback_plugins(handle, attached)
        raise


def _rollback_plugins(handle: AccelHandle, attached: list[tuple[DenoiserSession, Any]]) -> None:
    """Take off the plugins of a failed second ``apply``, keep the earlier ones."""
    for session in handle.sessions:
        keep = [p for p in session.plugins if all(p is not q for _, q in attached)]
        configs = [p.config for p in keep]
        session.remove()
        session.install_context()
        for config in configs:
            plugin = plugin_for(config)(config, session)
            session.plugins.append(plugin)
            plugin.attach()
        session.finish_install()


def remove(target: Any) -> bool:
    """Remove every accel plugin from ``target``; returns False if nothing was attached.

    The model is restored exactly: same outputs bit for bit, no leftover hooks or overrides.
    """
    with _API_LOCK:
        handle = get_handle(target)
        if handle is None:
            return False
        with handle.context.exclusive("remove"):
            owner = handle.target
            errors: list[BaseException] = []
            for session in handle.sessions:
                try:
                    session.remove()
                except BaseException as exc:
                    errors.append(exc)
                _HANDLES.pop(session.denoiser, None)
            handle.context.unbind_pipeline()
            if owner is not None:
                _HANDLES.pop(owner, None)
            _HANDLES.pop(target, None)
    if errors:
        raise errors[0]
    return True


accel_remove = remove


def replicate(target: Any) -> Any:
    """An independent copy of an accelerated pipeline or model, for another worker thread.

    The copy has the same plugins with its own accel state and summary, and shares the original's
    weights (parameters and buffers are not copied, so it costs little memory). ``remove`` and
    ``apply`` work on each independently. Call it while the original is not generating (otherwise
    :class:`ConcurrentUseError`); the original's plugins are taken off and put back, which resets
    its statistics::

        workers = [accel.replicate(pipe) for _ in range(4)]  # one per thread
    """
    handle = get_handle(target)
    if handle is None:
        raise NotFoundError(f"accel is not attached to this {type(target).__name__}; copy it with copy.deepcopy")
    if handle.target is not target:
        raise StateError("replicate the target accel was applied to (the pipeline), not one of its denoisers")
    configs = list(handle.configs)
    hints = {
        "num_inference_steps": handle.context.user_num_inference_steps,
        "cfg_stacked": handle.context.user_cfg_stacked,
    }
    with _API_LOCK:
        remove(target)
        try:
            shared: dict[int, Any] = {}
            modules = [target] if isinstance(target, nn.Module) else list(target.components.values())
            for module in (m for m in modules if isinstance(m, nn.Module)):
                for tensor in list(module.parameters()) + list(module.buffers()):
                    shared[id(tensor)] = tensor
            clone = copy.deepcopy(target, shared)
        finally:
            apply(target, *configs, **hints)
        apply(clone, *configs, **hints)
    return clone


def get_handle(target: Any) -> AccelHandle | None:
    """The handle of ``target`` (a pipeline or one of its denoisers), if accel is attached."""
    try:
        return _HANDLES.get(target)
    except TypeError:  # not weak-referenceable: cannot carry plugins
        return None


def summary(target: Any) -> Summary:
    """What is attached to ``target`` and the statistics of its last generation."""
    handle = get_handle(target) or _component_handle(target)
    if handle is None:
        return Summary(target=type(target).__name__, attached=False, plugins=[], denoisers={}, last_call={})
    denoisers = {}
    for session in handle.sessions:
        denoisers[session.name] = {
            "family": session.adapter.family,
            "plugins": {plugin.name: plugin.stats() for plugin in session.plugins},
        }
        if session.adapter.discovered:
            denoisers[session.name]["discovered"] = True  # blocks read off the model, no hand-written adapter
    return Summary(
        target=type(handle.target).__name__,
        attached=True,
        plugins=[str(c) for c in handle.configs],
        denoisers=denoisers,
        last_call=handle.context.stats.as_dict(),
    )


def _component_handle(target: Any) -> AccelHandle | None:
    """The handle of plugins applied to one of a pipeline's denoisers directly (``accel.apply(pipe.unet)``)."""
    components = getattr(target, "components", None)
    if isinstance(target, nn.Module) or not isinstance(components, dict):
        return None
    for attr in DENOISER_ATTRIBUTES:
        handle = get_handle(components.get(attr)) if components.get(attr) is not None else None
        if handle is not None:
            return handle
    return None


def _flatten(configs: Iterable[Any]) -> list[PluginConfig]:
    flat: list[PluginConfig] = []
    for item in configs:
        if isinstance(item, (list, tuple)):
            flat.extend(_flatten(item))
        elif isinstance(item, PluginConfig):
            plugin_for(item)  # raises for unregistered configs
            flat.append(item)
        else:
            raise ConfigError(
                f"accel.apply expects plugin configs such as accel.DeepCacheConfig(...), got {type(item).__name__}"
            )
    return flat


def _resolve(target: Any) -> list[tuple[str, nn.Module]]:
    """The ``(name, denoiser)`` pairs of a pipeline, or ``[("denoiser", target)]`` for a model."""
    if isinstance(target, nn.Module):
        lookup(target)
        return [(type(unwrap(target)).__name__, target)]
    components = getattr(target, "components", None)
    if not isinstance(components, dict):
        raise UnsupportedModelError(
            f"accel.apply expects a diffusers pipeline, a denoiser model or a timm model, got {type(target).__name__}"
        )
    found = []
    for attr in DENOISER_ATTRIBUTES:
        module = components.get(attr)
        if isinstance(module, nn.Module) and find(module) is not None:
            found.append((attr, module))
    if not found:
        present = ", ".join(f"{k}={type(v).__name__}" for k, v in components.items() if isinstance(v, nn.Module))
        # raise the adapter's error for the first denoiser-like component, which names the supported families
        for attr in DENOISER_ATTRIBUTES:
            if isinstance(components.get(attr), nn.Module):
                lookup(components[attr])
        raise UnsupportedModelError(f"{type(target).__name__} has no denoiser accel knows (components: {present})")
    return found


def adapter_of(target: Any) -> Adapter:
    """The adapter of ``target``'s (first) denoiser."""
    return lookup(_resolve(target)[0][1])
