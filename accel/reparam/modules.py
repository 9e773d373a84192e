"""The modules of RePaViT's channel-idle FFN (Xu et al., arXiv 2505.21847), training and folded forms.

Training form (:class:`ChannelIdleMlp`): ``x + fc2(BN2(act_a(fc1(BN1(x)))))`` where ``act_a`` applies the
activation to the first ``a`` hidden channels only and leaves the rest ("idle") linear.
Folded form: the BatchNorms, the idle channels and the shortcut merge into plain Linears:
``y = W_lin x + b_lin + W2[:, :a] act(W1[:a] x + b1[:a])`` (:class:`RePaFFN`); with ``a = 0`` this is one
``nn.Linear`` and with every channel active it is :class:`ResidualFFN`.

Every FFN here includes its residual shortcut, so :class:`RePaBlock` (a timm ``Block`` whose FFN owns
its shortcut) returns ``mlp(x)`` instead of ``x + mlp(norm2(x))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..errors import ConfigError


class TokenBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over the last (channel) dimension of tokens of any shape, e.g. ``(B, N, C)``.

    Statistics are taken over every leading dimension (batch and tokens), the same as
    ``BatchNorm1d`` on ``(B, C, N)``; the state-dict keys are those of ``BatchNorm1d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


class ChannelIdleMlp(nn.Module):
    """RePaViT's training-form FFN with its own shortcut.

    ``x + drop_path(ls(drop2(fc2(norm2(drop1(act_a(fc1(norm1(x)))))))))``: ``norm1`` replaces the block's
    pre-FFN LayerNorm, ``act_a`` activates hidden channels ``[0, act_channels)`` only, ``norm2`` is the
    optional BatchNorm after the activation and ``ls`` the block's LayerScale (Identity when absent).

    ``fc1``/``fc2`` are Linears on channels-last tokens (ViT, Swin, MLP-Mixer) or 1x1 ``Conv2d`` layers on
    channels-first maps (PoolFormer); the BatchNorms follow the same layout.
    """

    def __init__(
        self,
        fc1: nn.Linear,
        act: nn.Module,
        fc2: nn.Linear,
        act_channels: int,
        act_norm: bool = True,
        drop1: nn.Module | None = None,
        drop2: nn.Module | None = None,
        ls: nn.Module | None = None,
        drop_path: nn.Module | None = None,
    ) -> None:
        super().__init__()
        dim, hidden = layer_sizes(fc1)
        if not 0 <= act_channels <= hidden:
            raise ConfigError(f"act_channels must be in [0, {hidden}], got {act_channels}")
        factory = {"device": fc1.weight.device, "dtype": fc1.weight.dtype}
        self.in_features = dim
        self.hidden_features = hidden
        self.act_channels = act_channels
        #: The channel axis: -1 for Linears on tokens, 1 for 1x1 convolutions on NCHW maps.
        self.channel_dim = 1 if isinstance(fc1, nn.Conv2d) else -1
        norm = nn.BatchNorm2d if self.channel_dim == 1 else TokenBatchNorm
        self.norm1 = norm(dim, **factory)
        self.fc1 = fc1
        self.act = act
        self.drop1 = drop1 if drop1 is not None else nn.Identity()
        self.norm2 = norm(hidden, **factory) if act_norm else nn.Identity()
        self.fc2 = fc2
        self.drop2 = drop2 if drop2 is not None else nn.Identity()
        self.ls = ls if ls is not None else nn.Identity()
        self.drop_path = drop_path if drop_path is not None else nn.Identity()

    @property
    def idle_ratio(self) -> float:
        return 1.0 - self.act_channels / self.hidden_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(self.norm1(x))
        a, dim = self.act_channels, self.channel_dim
        h = torch.cat([self.act(h.narrow(dim, 0, a)), h.narrow(dim, a, h.shape[dim] - a)], dim=dim)
        h = self.fc2(self.norm2(self.drop1(h)))
        return x + self.drop_path(self.ls(self.drop2(h)))


class RePaFFN(nn.Module):
    """Folded channel-idle FFN: ``linear(x) + fc2(act(fc1(x)))``.

    ``linear`` (d -> d) carries the idle channels, both BatchNorms' shifts and the shortcut; ``fc1``
    (d -> a) and ``fc2`` (a -> d, no bias) are the active channels.
    """

    def __init__(self, linear: nn.Linear, fc1: nn.Linear, act: nn.Module, fc2: nn.Linear) -> None:
        super().__init__()
        self.linear = linear
        self.fc1 = fc1
        self.act = act
        self.fc2 = fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.fc2(self.act(self.fc1(x)))


class ResidualFFN(nn.Module):
    """Folded FFN with every channel active (idle ratio 0): ``x + fc2(act(fc1(x)))``."""

    def __init__(self, fc1: nn.Linear, act: nn.Module, fc2: nn.Linear) -> None:
        super().__init__()
        self.fc1 = fc1
        self.act = act
        self.fc2 = fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


def layer_sizes(layer: nn.Module) -> tuple[int, int]:
    """``(in, out)`` channels of a Linear or a 1x1 ``Conv2d``."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels


class RePaFFNBlock:
    """Marks a block whose ``mlp`` is a RePaViT FFN that includes its shortcut, and records the conversion
    settings (kept for saving and summaries: the folded ``mlp`` forgets them)."""

    idle_ratio: float
    act_norm: bool
    hidden_features: int
    act_channels: int

    def record_conversion(self, mlp: ChannelIdleMlp, idle_ratio: float, act_norm: bool) -> None:
        self.idle_ratio = float(idle_ratio)
        self.act_norm = bool(act_norm)
        self.hidden_features = mlp.hidden_features
        self.act_channels = mlp.act_channels


class RePaBlock(nn.Module, RePaFFNBlock):
    """A timm ViT ``Block`` whose FFN (``mlp``) includes the FFN's shortcut.

    The attention half (``norm1``, ``attn``, ``ls1``, ``drop_path1``) is the original block's modules;
    ``mlp`` is a :class:`ChannelIdleMlp` (training form) when built and may later be replaced by its
    folded form.
    """

    def __init__(
        self,
        norm1: nn.Module,
        attn: nn.Module,
        ls1: nn.Module,
        drop_path1: nn.Module,
        mlp: nn.Module,
        idle_ratio: float,
        act_norm: bool = True,
    ) -> None:
        super().__init__()
        self.record_conversion(mlp, idle_ratio, act_norm)
        self.norm1 = norm1
        self.attn = attn
        self.ls1 = ls1
        self.drop_path1 = drop_path1
        self.mlp = mlp

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal)))
        return self.mlp(x)


FOLDED_TYPES = (RePaFFN, ResidualFFN, nn.Linear, nn.Conv2d)


def is_folded(mlp: nn.Module) -> bool:
    """Whether a RePaBlock's ``mlp`` is in folded (inference) form."""
    return isinstance(mlp, FOLDED_TYPES)


def ffn_macs_per_token(ffn: nn.Module) -> int:
    """Multiply-accumulates per token of an FFN: the sum of ``in * out`` over its Linear (or 1x1 conv) layers.

    BatchNorms, biases and the activation are not counted (they fold away or are elementwise).
    """
    return sum(math.prod(layer_sizes(m)) for m in ffn.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
