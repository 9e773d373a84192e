"""Convert a timm ViT to RePaViT's channel-idle training form (Xu et al., arXiv 2505.21847).

Algorithm: each block's pre-FFN LayerNorm becomes a BatchNorm and only the first
``ceil(h * (1 - idle_ratio))`` hidden channels pass the activation, so after training the FFN folds
into Linears (:func:`accel.reparam.reparameterize`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError, UnsupportedModelError
from .modules import ChannelIdleMlp, RePaBlock

SUPPORTED = (
    "timm VisionTransformer models (ViT, DeiT and DeiT distilled, DeiT-III, ViT with registers, ...) "
    "whose blocks are timm `Block`s (pre-norm) with a LayerNorm before a timm `Mlp` FFN (fc1 -> act -> fc2)"
)


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


def _block_problem(block: nn.Module) -> str | None:
    """Why ``block`` cannot be converted, or None."""
    from timm.layers import LayerScale, Mlp
    from timm.models.vision_transformer import Block

    if isinstance(block, RePaBlock):
        return "it is already a RePaViT block (the model was converted before)"
    if not isinstance(block, Block) or type(block).forward is not Block.forward:
        return f"it is a {type(block).__name__}, not a pre-norm timm Block"
    mlp = getattr(block, "mlp", None)
    if not isinstance(mlp, Mlp) or type(mlp).forward is not Mlp.forward:
        return f"its FFN is a {type(mlp).__name__}, not a timm Mlp"
    if not isinstance(mlp.fc1, nn.Linear) or not isinstance(mlp.fc2, nn.Linear):
        return "its Mlp uses convolutions (use_conv=True)"
    if not isinstance(mlp.norm, nn.Identity):
        return f"its Mlp has a hidden norm ({type(mlp.norm).__name__})"
    if not isinstance(block.norm2, nn.LayerNorm):
        return f"its pre-FFN norm is a {type(block.norm2).__name__}, not a LayerNorm"
    if not isinstance(block.ls2, (nn.Identity, LayerScale)):
        return f"its FFN layer scale is a {type(block.ls2).__name__}"
    return None


def check_convertible(model: Any) -> nn.Module:
    """The (unwrapped) model if every block can be converted; else :class:`UnsupportedModelError`."""
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(
            f"RePaViT needs a torch model, got {type(model).__name__}; it supports {SUPPORTED}"
        )
    inner = _unwrap(model)
    if not isinstance(inner, VisionTransformer):
        raise UnsupportedModelError(
            f"RePaViT does not support {type(inner).__module__}.{type(inner).__name__}; it supports {SUPPORTED}"
        )
    if len(inner.blocks) == 0:
        raise UnsupportedModelError(f"{type(inner).__name__} has no blocks; RePaViT supports {SUPPORTED}")
    for i, block in enumerate(inner.blocks):
        problem = _block_problem(block)
        if problem:
            raise UnsupportedModelError(
                f"cannot convert blocks.{i} of {type(inner).__name__}: {problem}. RePaViT supports {SUPPORTED}"
            )
    return inner


def convert_block(
    block: nn.Module, idle_ratio: float, act_norm: bool = True, act_channels: int | None = None
) -> RePaBlock:
    """The channel-idle :class:`RePaBlock` of a timm ``Block``; ``block`` itself is left unchanged.

    The attention half is shared with ``block``; fc1, fc2 and the activation are copied; the
    BatchNorm replacing ``norm2`` starts from the LayerNorm's affine parameters (running stats 0/1:
    calibrate them with :func:`accel.reparam.calibrate_batchnorm` before use). ``act_channels``
    overrides the number of active channels derived from ``idle_ratio`` (loading saved models).
    """
    mlp = block.mlp
    fc1, fc2 = copy.deepcopy(mlp.fc1), copy.deepcopy(mlp.fc2)
    if act_channels is None:
        act_channels = act_channels_for(fc1.out_features, idle_ratio)
    ls = copy.deepcopy(block.ls2) if not isinstance(block.ls2, nn.Identity) else None
    ffn = ChannelIdleMlp(
        fc1,
        copy.deepcopy(mlp.act),
        fc2,
        act_channels,
        act_norm=act_norm,
        drop1=copy.deepcopy(mlp.drop1),
        drop2=copy.deepcopy(mlp.drop2),
        ls=ls,
        drop_path=copy.deepcopy(block.drop_path2),
    )
    ln = block.norm2
    with torch.no_grad():
        if getattr(ln, "weight", None) is not None:
            ffn.norm1.weight.copy_(ln.weight)
        if getattr(ln, "bias", None) is not None:
            ffn.norm1.bias.copy_(ln.bias)
    ffn.train(block.training)
    return RePaBlock(block.norm1, block.attn, block.ls1, block.drop_path1, ffn, idle_ratio, act_norm)


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
        model: a timm ``VisionTransformer`` (or subclass, e.g. DeiT distilled) with timm ``Mlp`` FFNs.
        idle_ratio: fraction of hidden channels without activation, in [0, 1] (paper default 0.75), or
            one such fraction per block.
        inplace: convert ``model`` itself instead of a deep copy.
        act_norm: insert the BatchNorm after the activation, as in the paper.

    Returns:
        The converted model (a copy unless ``inplace``).

    Raises:
        ConfigError: ``idle_ratio`` outside [0, 1].
        UnsupportedModelError: the model is not a timm ViT with ``Mlp`` FFNs.
    """
    check_convertible(model)
    ratios = check_idle_ratios(idle_ratio, len(_unwrap(model).blocks), "to_repavit idle_ratio")
    if not inplace:
        model = copy.deepcopy(model)
    inner = _unwrap(model)
    for i in range(len(inner.blocks)):
        inner.blocks[i] = convert_block(inner.blocks[i], ratios[i], act_norm)
    return model


def repa_blocks(model: nn.Module) -> list[tuple[int, RePaBlock]]:
    """``(index, block)`` of every RePaViT block of a converted model; raises if there is none."""
    inner = _unwrap(model) if isinstance(model, nn.Module) else model
    blocks = getattr(inner, "blocks", None)
    found = [(i, b) for i, b in enumerate(blocks)] if isinstance(blocks, nn.Module) else []
    found = [(i, b) for i, b in found if isinstance(b, RePaBlock)]
    if not found:
        raise UnsupportedModelError(
            f"{type(inner).__name__} has no RePaViT blocks; convert it first with accel.reparam.to_repavit "
            f"(which supports {SUPPORTED})"
        )
    return found
