"""Convert a timm ViT, Swin, MLP-Mixer or PoolFormer to RePaViT's channel-idle training form
(Xu et al., arXiv 2505.21847).

Algorithm: each block's pre-FFN LayerNorm (or GroupNorm) becomes a BatchNorm and only the first
``ceil(h * (1 - idle_ratio))`` hidden channels pass the activation, so after training the FFN folds
into Linears (:func:`accel.reparam.reparameterize`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from ..errors import ConfigError, UnsupportedModelError
from . import families
from .modules import RePaFFNBlock


def check_idle_ratio(idle_ratio: Any, owner: str = "idle_ratio") -> float:
    """Return ``idle_ratio`` as a float or raise :class:`ConfigError` naming the allowed range [0, 1]."""
    if (
        isinstance(idle_ratio, bool)
        or not isinstance(idle_ratio, (int, float))
        or not math.isfinite(idle_ratio)
        or not 0.0 <= idle_ratio <= 1.0
    ):
        raise ConfigError(
            f"{owner} must be a number in [0, 1] (the fraction of FFN hidden channels left without "
            f"activation), got {idle_ratio!r}"
        )
    return float(idle_ratio)


def act_channels_for(hidden: int, idle_ratio: float) -> int:
    """Active hidden channels: ``ceil(hidden * (1 - idle_ratio))``, the upstream RePaViT rule."""
    return math.ceil(hidden * (1 - idle_ratio))


def _unwrap(model: nn.Module) -> nn.Module:
    from ..pipelines.registry import unwrap

    return unwrap(model)


def supported() -> str:
    """The model families RePaViT converts, in words (for errors and docs)."""
    return families.supported()


def convertible(model: Any) -> tuple[nn.Module, families.Family]:
    """``(unwrapped model, family)`` if every block can be converted; else :class:`UnsupportedModelError`."""
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(
            f"RePaViT needs a torch model, got {type(model).__name__}; it supports {supported()}"
        )
    inner = _unwrap(model)
    family = families.family_of(inner)
    if family is None:
        raise UnsupportedModelError(
            f"RePaViT does not support {type(inner).__module__}.{type(inner).__name__}; it supports {supported()}"
        )
    sites = family.sites(inner)
    if not sites:
        raise UnsupportedModelError(f"{type(inner).__name__} has no blocks; RePaViT supports {supported()}")
    for site in sites:
        if isinstance(site.block, RePaFFNBlock):
            problem = "it is already a RePaViT block (the model was converted before)"
        else:
            problem = family.block_problem(site.block)
        if problem:
            raise UnsupportedModelError(
                f"cannot convert {site.name} of {type(inner).__name__}: {problem}. RePaViT supports {supported()}"
            )
    return inner, family


def check_convertible(model: Any) -> nn.Module:
    """The (unwrapped) model if every block can be converted; else :class:`UnsupportedModelError`."""
    return convertible(model)[0]


def model_sites(model: nn.Module) -> list[families.BlockSite]:
    """Every block site of a supported model, converted or not (empty for other models)."""
    inner = _unwrap(model)
    family = families.family_of(inner)
    return family.sites(inner) if family is not None else []


def check_idle_ratios(idle_ratio: Any, depth: int, owner: str = "idle_ratio") -> list[float]:
    """One idle ratio per block: a number for all of them, or a sequence of ``depth`` numbers (RePaViT's
    ``--heuristic`` runs train with per-layer ratios)."""
    if isinstance(idle_ratio, (list, tuple)):
        if len(idle_ratio) != depth:
            raise ConfigError(f"{owner} has {len(idle_ratio)} per-layer ratios, the model has {depth} blocks")
        return [check_idle_ratio(r, f"{owner}[{i}]") for i, r in enumerate(idle_ratio)]
    return [check_idle_ratio(idle_ratio, owner)] * depth


def to_repavit(
    model: nn.Module, idle_ratio: float | Sequence[float] = 0.75, inplace: bool = False, act_norm: bool = True
) -> nn.Module:
    """Convert a timm ViT into RePaViT's channel-idle training form (arXiv 2505.21847).

    Each ``Block`` becomes a :class:`~accel.reparam.modules.RePaBlock`: its pre-FFN LayerNorm turns
    into a BatchNorm over channels, only the first ``ceil(h * (1 - idle_ratio))`` of the ``h`` hidden
    channels pass the activation, an optional BatchNorm follows the activation (``act_norm``) and the
    FFN owns its shortcut, so :func:`~accel.reparam.reparameterize` can fold it all into Linears.

    The converted model computes a different function until it is fine-tuned (see
    :func:`accel.tuning.repavit_finetune.finetune`): this is not training-free for LayerNorm ViTs.

    Args:
        model: a timm ``VisionTransformer`` (or subclass, e.g. DeiT distilled), ``SwinTransformer``,
            ``MlpMixer`` or ``MetaFormer`` (PoolFormer) with timm ``Mlp`` FFNs.
        idle_ratio: fraction of hidden channels without activation, in [0, 1] (paper default 0.75), or
            one such fraction per block.
        inplace: convert ``model`` itself instead of a deep copy.
        act_norm: insert the BatchNorm after the activation, as in the paper.

    Returns:
        The converted model (a copy unless ``inplace``).

    Raises:
        ConfigError: ``idle_ratio`` outside [0, 1].
        UnsupportedModelError: the model is not one of those families with ``Mlp`` FFNs.
    """
    _, family = convertible(model)
    ratios = check_idle_ratios(idle_ratio, len(family.sites(_unwrap(model))), "to_repavit idle_ratio")
    if not inplace:
        model = copy.deepcopy(model)
    for site, ratio in zip(family.sites(_unwrap(model)), ratios, strict=True):
        hidden = family.hidden(site.block)
        site.replace(family.convert_block(site.block, ratio, act_norm, act_channels_for(hidden, ratio)))
    return model


def repa_blocks(model: nn.Module) -> list[tuple[str, RePaFFNBlock]]:
    """``(name, block)`` of every RePaViT block of a converted model; raises if there is none."""
    found = [(site.name, site.block) for site in model_sites(model) if isinstance(site.block, RePaFFNBlock)]
    if not found:
        raise UnsupportedModelError(
            f"{type(_unwrap(model)).__name__} has no RePaViT blocks; convert it first with accel.reparam.to_repavit "
            f"(which supports {supported()})"
        )
    return found
