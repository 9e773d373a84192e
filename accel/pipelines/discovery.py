"""Automatic block discovery for diffusers transformers that have no hand-written adapter.

A diffusers transformer keeps its repeated blocks in ``nn.ModuleList`` attributes, and most classes
name the block classes in ``_repeated_blocks`` (what ``compile_repeated_blocks`` compiles). Discovery
reads the structure of the model it is given (cache-dit's "forward pattern" idea, from the modules
instead of a hand-made table):

* block lists: the ``ModuleList`` children whose members are instances of a ``_repeated_blocks``
  class, or, for classes that name none, of one class whose list is called ``*block*`` or ``*layer*``
  (``transformer_blocks``, ``single_transformer_blocks``, ``blocks``, ``layers``), in registration
  order, which diffusers' forwards follow;
* each block's cacheable components: its direct children that are attention modules (diffusers'
  ``Attention`` / ``AttentionModuleMixin``, or anything with a ``processor``) and feed-forward
  modules (``FeedForward``, or a child named ``ff``/``ffn``/``mlp``/``feed_forward``). Their outputs
  are what FORA-style caching reuses; the block's residual additions stay live.

What discovery cannot know, it does not guess: the token layout (RAS) and the attention processors
(sparse attention) stay unsupported, with the reason in the error. The adapter says it was
discovered (``Adapter.discovered``), ``accel.apply`` says so once, and the summary records it.
"""

from __future__ import annotations

import re

import torch.nn as nn

from .registry import Adapter, BlockSpec, Component

#: Child names taken as feed-forward modules when their class does not say so.
FFN_NAMES = ("ff", "ffn", "mlp", "feed_forward")
#: Child names of a text-stream feed-forward in dual-stream blocks.
CONTEXT_FFN_NAMES = ("ff_context", "ffn_context", "context_ff", "txt_mlp", "context_mlp")
_LIST_NAME = re.compile(r"block|layer", re.IGNORECASE)


def is_diffusers_transformer(model: nn.Module) -> bool:
    """A model class defined in ``diffusers.models.transformers`` (or a subclass of one)."""
    return any(cls.__module__.startswith("diffusers.models.transformers") for cls in type(model).__mro__)


def block_lists(model: nn.Module) -> tuple[str, ...]:
    """Names of the ``ModuleList`` children that hold the repeated blocks, in order."""
    named = set(getattr(type(model), "_repeated_blocks", None) or ())
    out = []
    for name, child in model.named_children():
        if not isinstance(child, nn.ModuleList) or len(child) < 1:
            continue
        classes = {type(m).__name__ for m in child}
        if named and classes <= named:
            out.append(name)
        elif not named and len(classes) == 1 and len(child) >= 2 and _LIST_NAME.search(name):
            out.append(name)
    return tuple(out)


def component_kind(name: str, module: nn.Module) -> str | None:
    """``self_attn`` / ``ffn`` / ``context_ffn`` for a block's direct child, or None."""
    cls = type(module).__name__
    if hasattr(module, "processor") or "Attention" in cls:
        return "self_attn"
    if name in CONTEXT_FFN_NAMES:
        return "context_ffn"
    if "FeedForward" in cls or name in FFN_NAMES:
        return "ffn"
    return None


def block_spec(block: nn.Module) -> BlockSpec:
    """The block's attention and feed-forward children; a block that wraps a single inner block
    (``HiDreamBlock.block``) is read through it."""
    prefix = ""
    children = list(block.named_children())
    if len(children) == 1 and not component_kind(*children[0]):
        prefix, block_or_inner = f"{children[0][0]}.", children[0][1]
        children = list(block_or_inner.named_children())
    components = tuple(
        Component(prefix + name, kind) for name, child in children if (kind := component_kind(name, child)) is not None
    )
    return BlockSpec(type(block).__name__, components)


def discover(model: nn.Module) -> Adapter | None:
    """An adapter read off ``model``'s structure, or None when it is not a diffusers transformer with a
    repeated block list."""
    if not is_diffusers_transformer(model):
        return None
    lists = block_lists(model)
    if not lists:
        return None
    specs: dict[str, BlockSpec] = {}
    for name in lists:
        for block in getattr(model, name):
            specs.setdefault(type(block).__name__, block_spec(block))
    cls = type(model)
    video = "3D" in cls.__name__ or "Video" in cls.__name__
    return Adapter(
        family=f"auto:{cls.__name__}",
        title=f"{cls.__name__} (discovered automatically)",
        kind="video_dit" if video else "image_dit",
        model_classes=((cls.__module__, cls.__name__),),
        block_lists=lists,
        block_specs=tuple(specs.values()),
        cfg_layout="separate",
        discovered=True,
    )
