"""Building blocks shared by the RePaViT families (Xu et al., arXiv 2505.21847).

Algorithm: a block's pre-FFN norm and timm ``Mlp`` become a :class:`ChannelIdleMlp` (BatchNorm in,
the first ``a`` hidden channels activated, BatchNorm after, shortcut inside), and the block is
re-created as a subclass of its own timm class whose forward hands the FFN's residual to ``mlp``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..modules import ChannelIdleMlp, RePaFFNBlock


def mlp_problem(mlp: nn.Module) -> str | None:
    """Why a timm ``Mlp`` (Linear or 1x1-conv layers, no hidden norm) cannot be converted, or None."""
    from timm.layers import Mlp

    if not isinstance(mlp, Mlp) or type(mlp).forward is not Mlp.forward:
        return f"its FFN is a {type(mlp).__name__}, not a timm Mlp"
    for layer in (mlp.fc1, mlp.fc2):
        if isinstance(layer, nn.Conv2d):
            if layer.kernel_size != (1, 1) or layer.groups != 1:
                return "its Mlp convolutions are not pointwise (1x1, one group)"
        elif not isinstance(layer, nn.Linear):
            return f"its Mlp layer is a {type(layer).__name__}"
    if not isinstance(mlp.norm, nn.Identity):
        return f"its Mlp has a hidden norm ({type(mlp.norm).__name__})"
    return None


def norm_problem(norm: nn.Module) -> str | None:
    """Why a pre-FFN norm cannot be replaced by a BatchNorm, or None (LayerNorm-like norms are accepted)."""
    from timm.layers import LayerNorm2d

    if isinstance(norm, nn.LayerNorm | LayerNorm2d):
        return None
    if isinstance(norm, nn.GroupNorm) and norm.num_groups == 1:
        return None
    return f"its pre-FFN norm is a {type(norm).__name__}, not a LayerNorm or one-group GroupNorm"


def channel_idle_mlp(
    mlp: nn.Module,
    pre_norm: nn.Module,
    act_channels: int,
    act_norm: bool,
    ls: nn.Module | None,
    drop_path: nn.Module,
    training: bool,
) -> ChannelIdleMlp:
    """The :class:`ChannelIdleMlp` of a timm ``Mlp`` and its pre-norm (copies; the originals are unchanged).

    The BatchNorm replacing ``pre_norm`` starts from its affine parameters (running statistics 0/1:
    calibrate them with :func:`accel.reparam.calibrate_batchnorm`).
    """
    ffn = ChannelIdleMlp(
        copy.deepcopy(mlp.fc1),
        copy.deepcopy(mlp.act),
        copy.deepcopy(mlp.fc2),
        act_channels,
        act_norm=act_norm,
        drop1=copy.deepcopy(mlp.drop1),
        drop2=copy.deepcopy(mlp.drop2),
        ls=copy.deepcopy(ls) if ls is not None and not isinstance(ls, nn.Identity) else None,
        drop_path=copy.deepcopy(drop_path),
    )
    with torch.no_grad():
        if getattr(pre_norm, "weight", None) is not None:
            ffn.norm1.weight.copy_(pre_norm.weight.reshape(-1))
        if getattr(pre_norm, "bias", None) is not None:
            ffn.norm1.bias.copy_(pre_norm.bias.reshape(-1))
    return ffn.train(training)


def swap_ffn(
    block: nn.Module, cls: type, mlp: ChannelIdleMlp, idle_ratio: float, act_norm: bool, drop: tuple[str, ...]
) -> nn.Module:
    """A ``cls`` instance (a subclass of ``block``'s class) sharing ``block``'s modules, buffers and
    settings, without the submodules named in ``drop`` and with ``mlp`` as its FFN; ``block`` is unchanged."""
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    internals = set(new.__dict__)
    new.__dict__.update({k: v for k, v in block.__dict__.items() if k not in internals})
    new._parameters.update(block._parameters)
    new._buffers.update(block._buffers)
    new._non_persistent_buffers_set |= block._non_persistent_buffers_set
    new._modules.update((k, v) for k, v in block._modules.items() if k not in drop)
    new.training = block.training
    new._modules["mlp"] = mlp
    assert isinstance(new, RePaFFNBlock)
    new.record_conversion(mlp, idle_ratio, act_norm)
    return new
