"""Architecture adapters: everything accel knows about a model family lives here.

Plugins never name a model class. They ask the adapter of the denoiser for its blocks, the
components of each block (self-attention, cross-attention, feed-forward), the block I/O contract
and the token layout. ``lookup(model)`` finds the adapter or raises an error naming every
supported family.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable

import torch.nn as nn

from ..errors import UnsupportedModelError

#: Component kinds a block may expose.
COMPONENT_KINDS = ("self_attn", "cross_attn", "joint_attn", "ffn", "context_ffn", "mlp_in", "mlp_out", "block")


@dataclasses.dataclass(frozen=True)
class Component:
    """A sub-module of a transformer block that a cache may skip: ``attr`` on the block (a dotted path for
    a nested one), of ``kind``."""

    attr: str
    kind: str


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """The cacheable components of one block class."""

    block_class: str
    components: tuple[Component, ...]


@dataclasses.dataclass(frozen=True)
class Adapter:
    """What accel knows about one architecture family.

    Attributes:
        family: short id used in errors, configs and schedules (e.g. ``"pixart"``).
        title: human name for errors and docs.
        kind: ``"unet"``, ``"image_dit"``, ``"video_dit"`` or ``"vit"``.
        model_classes: ``(module prefix, class name)`` pairs; subclasses match through the MRO.
        block_lists: names (dotted; ``*`` for every stage) of the containers holding the transformer blocks, in
            execution order.
        block_specs: cacheable components per block class.
        cfg_layout: how this family's stock pipelines run classifier-free guidance: ``"stacked"``
            (one call on ``[uncond, cond]``) or ``"separate"`` (one call per branch). accel detects
            the layout at run time; this is documentation and the default for bare denoisers.
        cfg_order: order of the halves of a stacked CFG batch: ``"uncond_first"`` (diffusers'
            convention) or ``"cond_first"`` (``DiTPipeline``).
        unbatched_inputs: forward arguments whose leading dimension is not the batch (RoPE tables,
            position ids); batch-slicing plugins leave them alone.
        batch_dims: ``(argument, dimension)`` pairs for forward arguments whose batch is not on dim 0
            (HiDream's stacked Llama embeddings: 1); batch-slicing plugins cut them there.
        unsupported: ``(config class name, reason)`` pairs: plugins that cannot run on this family
            although its kind would allow them, refused at apply with the reason.
        discovered: read off the model's structure by :mod:`.discovery` (no hand-written adapter):
            BlockCache and adaptive guidance work; what needs the token layout or the attention
            processors (RAS, sparse attention) is refused.
    """

    family: str
    title: str
    kind: str
    model_classes: tuple[tuple[str, str], ...]
    block_lists: tuple[str, ...] = ()
    block_specs: tuple[BlockSpec, ...] = ()
    cfg_layout: str = "stacked"
    cfg_order: str = "uncond_first"
    unbatched_inputs: frozenset[str] = frozenset()
    batch_dims: tuple[tuple[str, int], ...] = ()
    unsupported: tuple[tuple[str, str], ...] = ()
    discovered: bool = False

    def detect_cfg_stacked(self, kwargs: dict, batch: int, latent_batch: int | None) -> bool | None:
        """Whether a denoiser call is a stacked CFG batch; None when it cannot be told."""
        if latent_batch is None:
            return None
        return batch == 2 * latent_batch

    # ---- discovery -------------------------------------------------------------------------
    def matches(self, model: nn.Module) -> bool:
        for cls in type(model).__mro__:
            for prefix, name in self.model_classes:
                if cls.__name__ == name and cls.__module__.startswith(prefix):
                    return True
        return False

    def blocks(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """``(qualified name, block)`` for every transformer block, in execution order."""
        out: list[tuple[str, nn.Module]] = []
        for list_name in self.block_lists:
            for prefix, blocks in _expand(model, list_name):
                for i, block in enumerate(blocks):
                    out.append((f"{prefix}.{i}", block))
        return out

    def block_spec(self, block: nn.Module) -> BlockSpec:
        for spec in self.block_specs:
            if type(block).__name__ == spec.block_class:
                return spec
        return BlockSpec(type(block).__name__, (Component("", "block"),))

    def components(self, block: nn.Module) -> dict[str, tuple[nn.Module, str]]:
        """``{attr: (module, kind)}`` of the cacheable components of ``block`` ('' means the whole block; a
        dotted ``attr`` reaches into a wrapper, e.g. ``block.attn1``)."""
        out = {}
        for comp in self.block_spec(block).components:
            try:
                module = block if comp.attr == "" else block.get_submodule(comp.attr)
            except AttributeError:  # an optional component this instance does not have
                continue
            if module is not None:
                out[comp.attr] = (module, comp.kind)
        return out

    def component_names(self) -> tuple[str, ...]:
        """Union of component attribute names over this family's block classes, stable order."""
        names: list[str] = []
        for spec in self.block_specs:
            for comp in spec.components:
                if comp.attr not in names:
                    names.append(comp.attr)
        return tuple(names)

    def attention_modules(
        self, model: nn.Module, kinds: Iterable[str] = ("self_attn", "joint_attn")
    ) -> list[tuple[str, nn.Module, str]]:
        """``(qualified name, attention module, kind)`` for attention components of the given kinds."""
        kinds = tuple(kinds)
        out = []
        for block_name, block in self.blocks(model):
            for attr, (module, kind) in self.components(block).items():
                if kind in kinds:
                    out.append((f"{block_name}.{attr}", module, kind))
        return out


_ADAPTERS: list[Adapter] = []


def register_adapter(adapter: Adapter) -> Adapter:
    """Add an adapter to the registry (later registrations take precedence)."""
    _ADAPTERS.insert(0, adapter)
    return adapter


def _expand(model: nn.Module, path: str) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the containers at a dotted ``path``; ``*`` stands for every child (the
    stages of a hierarchical model: ``"layers.*.blocks"``)."""
    found: list[tuple[str, nn.Module]] = [("", model)]
    for part in path.split("."):
        nxt = []
        for name, module in found:
            if part == "*":
                nxt += [(f"{name}.{i}".lstrip("."), child) for i, child in enumerate(module.children())]
            elif getattr(module, part, None) is not None:
                nxt.append((f"{name}.{part}".lstrip("."), getattr(module, part)))
        found = nxt
    return found


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying module of a ``torch.compile`` or accelerate/DDP wrapper."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        inner = getattr(model, "_orig_mod", None) or (
            getattr(model, "module", None)
            if type(model).__name__ in ("DistributedDataParallel", "DataParallel")
            else None
        )
        if inner is None:
            break
        model = inner
    return model


def lookup(model: object) -> Adapter:
    """The adapter for ``model``: a registered one, else one discovered from the structure of a diffusers
    transformer (:mod:`.discovery`), else an :class:`UnsupportedModelError` naming the supported families."""
    _ensure_builtin_adapters()
    if isinstance(model, nn.Module):
        model = unwrap(model)
        for adapter in _ADAPTERS:
            if adapter.matches(model):
                return adapter
        discovered = _discovered(model)
        if discovered is not None:
            return discovered
    raise UnsupportedModelError(
        f"accel does not support {type(model).__module__}.{type(model).__name__}: it has no adapter, and it is "
        "not a diffusers transformer whose repeated blocks could be discovered. Supported families: "
        + "; ".join(f"{a.family} ({', '.join(name for _, name in a.model_classes)})" for a in supported_adapters())
        + ". Pass a diffusers pipeline, one of these denoisers, any diffusers transformer with repeated blocks, "
        "or a timm VisionTransformer."
    )


_DISCOVERED: dict[type, Adapter | None] = {}


def _discovered(model: nn.Module) -> Adapter | None:
    """The discovered adapter of ``model``'s class (read off the first instance seen)."""
    from .discovery import discover

    if type(model) not in _DISCOVERED:
        _DISCOVERED[type(model)] = discover(model)
    return _DISCOVERED[type(model)]


def find(model: object) -> Adapter | None:
    """Like :func:`lookup` but returns None for unsupported objects."""
    try:
        return lookup(model)
    except UnsupportedModelError:
        return None


def supported_adapters() -> list[Adapter]:
    _ensure_builtin_adapters()
    return sorted(_ADAPTERS, key=lambda a: a.family)


def supported_families() -> list[str]:
    return [a.family for a in supported_adapters()]


_BUILTINS_LOADED = False
_BUILTINS_LOCK = threading.Lock()


def _ensure_builtin_adapters() -> None:
    """Register the built-in adapters once. The flag is set only after every import finished, under
    a lock, so that a thread making the process's first lookup never sees a half-filled registry."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _BUILTINS_LOCK:
        if not _BUILTINS_LOADED:
            from .adapters import image_dits, timm_vit, unet, video_dits  # noqa: F401  (registration side effect)

            _BUILTINS_LOADED = True
