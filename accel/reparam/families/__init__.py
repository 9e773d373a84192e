"""The timm model families RePaViT converts (Xu et al., arXiv 2505.21847), one module each.

A :class:`Family` knows where a family's blocks live, which blocks it can convert and how: every
converted block becomes a :class:`~accel.reparam.modules.RePaFFNBlock` whose ``mlp`` is a
channel-idle FFN that owns its shortcut, so the generic conversion, folding, saving and plugin code
never look at the architecture.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

import torch.nn as nn


class BlockSite(NamedTuple):
    """One convertible block: its qualified name and the container that holds it."""

    name: str
    parent: nn.Module
    index: int

    @property
    def block(self) -> nn.Module:
        return self.parent[self.index]

    def replace(self, new: nn.Module) -> None:
        self.parent[self.index] = new


@dataclasses.dataclass(frozen=True)
class Family:
    """How RePaViT converts one timm model family.

    Attributes:
        name: short name (``"vit"``, ``"swin"``, ``"mixer"``, ``"metaformer"``).
        title: what it covers, for error messages and docs.
        model_class: ``(module, class name)`` of the timm model class (subclasses match).
        sites: the blocks of a model, in execution order.
        block_problem: why a block cannot be converted, or None.
        convert_block: ``(block, idle_ratio, act_norm, act_channels) -> converted block``; the original
            block is left unchanged (its non-FFN modules are shared).
        ffn_name: the attribute of an unconverted block that holds its timm ``Mlp`` (``"mlp"``;
            ``"mlp_channels"`` in MLP-Mixer).
        architecture: JSON constructor kwargs that rebuild the model with timm (for saving).
    """

    name: str
    title: str
    model_class: tuple[str, str]
    sites: Callable[[nn.Module], list[BlockSite]]
    block_problem: Callable[[nn.Module], str | None]
    convert_block: Callable[[nn.Module, float, bool, int], nn.Module]
    architecture: Callable[[nn.Module], dict[str, Any]]
    ffn_name: str = "mlp"

    def cls(self) -> type:
        module, name = self.model_class
        return getattr(importlib.import_module(module), name)

    def ffn(self, block: nn.Module) -> nn.Module:
        """The timm ``Mlp`` of an unconverted block."""
        return getattr(block, self.ffn_name)

    def hidden(self, block: nn.Module) -> int:
        """FFN hidden channels of a block, converted or not."""
        from ..modules import RePaFFNBlock, layer_sizes

        return block.hidden_features if isinstance(block, RePaFFNBlock) else layer_sizes(self.ffn(block).fc1)[1]

    def matches(self, model: nn.Module) -> bool:
        return isinstance(model, self.cls())


_MODULES = ("vit", "swin", "mixer", "metaformer")


def families() -> list[Family]:
    """Every supported family (imports timm)."""
    return [importlib.import_module(f"{__name__}.{m}").FAMILY for m in _MODULES]


def family_of(model: nn.Module) -> Family | None:
    """The family of an (unwrapped) model, or None."""
    return next((f for f in families() if f.matches(model)), None)


def family_of_class(cls: type) -> Family | None:
    """The family whose model class ``cls`` is (or subclasses), or None."""
    return next((f for f in families() if issubclass(cls, f.cls())), None)


def supported() -> str:
    """The supported families in words (for errors)."""
    return "; ".join(f.title for f in families())
