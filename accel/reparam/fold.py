"""Structural reparameterization of RePaViT FFNs (Xu et al., arXiv 2505.21847).

Algorithm: fold both eval-mode BatchNorms (and the LayerScale) into fc1/fc2, then merge the idle
(linear) channels with the shortcut: ``y = W_lin x + b_lin + W2[:, :a] act(W1[:a] x + b1[:a])``,
``W_lin = I + W2[:, a:] W1[a:]``, ``b_lin = b2 + W2[:, a:] b1[a:]``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..errors import InvalidInputError
from .modules import ChannelIdleMlp, RePaFFN, ResidualFFN, is_folded
from .repavit import repa_blocks


def _bn_affine(bn: nn.Module, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) == scale * x + shift`` in eval mode (float64)."""
    if isinstance(bn, nn.Identity):
        return torch.ones(size, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
        raise InvalidInputError(f"cannot fold {type(bn).__name__}: expected a BatchNorm with running statistics")
    weight = bn.weight.double() if bn.weight is not None else torch.ones(size, dtype=torch.float64)
    bias = bn.bias.double() if bn.bias is not None else torch.zeros(size, dtype=torch.float64)
    scale = weight / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bias - bn.running_mean.double() * scale


def _empty_layer(n_in: int, n_out: int, bias: bool, like: nn.Module) -> nn.Module:
    """A Linear, or a 1x1 ``Conv2d`` when ``like`` is one (channels-first FFNs)."""
    factory = {"device": like.weight.device, "dtype": like.weight.dtype}
    if isinstance(like, nn.Conv2d):
        return nn.Conv2d(n_in, n_out, 1, bias=bias, **factory)
    return nn.Linear(n_in, n_out, bias=bias, **factory)


def _layer(weight: torch.Tensor, bias: torch.Tensor | None, like: nn.Module) -> nn.Module:
    layer = _empty_layer(weight.shape[1], weight.shape[0], bias is not None, like)
    with torch.no_grad():
        layer.weight.copy_(weight.reshape(layer.weight.shape))
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _matrix(layer: nn.Module) -> torch.Tensor:
    """The float64 ``(out, in)`` weight of a Linear or 1x1 conv, on the CPU."""
    return layer.weight.detach().double().cpu().reshape(layer.weight.shape[0], -1)


def _scale_vector(ls: nn.Module) -> torch.Tensor | None:
    """The per-channel factor of a layer scale (timm ``LayerScale.gamma`` or MetaFormer ``Scale.scale``)."""
    for name in ("gamma", "scale"):
        value = getattr(ls, name, None)
        if isinstance(value, torch.Tensor):
            return value.detach().double().cpu().reshape(-1)
    return None


@torch.no_grad()
def fold_mlp(mlp: ChannelIdleMlp) -> nn.Module:
    """The folded inference module equivalent to ``mlp`` in eval mode.

    Returns a :class:`RePaFFN` for ``0 < a < h``, a :class:`ResidualFFN` when every channel is active
    and a single ``nn.Linear`` when every channel is idle.
    """
    if not isinstance(mlp, ChannelIdleMlp):
        raise InvalidInputError(f"fold_mlp expects a ChannelIdleMlp, got {type(mlp).__name__}")
    like = mlp.fc1
    dim, hidden, a = mlp.in_features, mlp.hidden_features, mlp.act_channels
    s1, t1 = _bn_affine(mlp.norm1, dim)
    s2, t2 = _bn_affine(mlp.norm2, hidden)
    w1, w2 = _matrix(mlp.fc1), _matrix(mlp.fc2)
    b1 = mlp.fc1.bias.double().cpu() if mlp.fc1.bias is not None else torch.zeros(hidden, dtype=torch.float64)
    b2 = mlp.fc2.bias.double().cpu() if mlp.fc2.bias is not None else torch.zeros(dim, dtype=torch.float64)
    s1, t1, s2, t2 = (v.cpu() for v in (s1, t1, s2, t2))
    # BN1 into fc1, BN2 into fc2.
    w1, b1 = w1 * s1[None, :], b1 + w1 @ t1
    w2, b2 = w2 * s2[None, :], b2 + w2 @ t2
    # LayerScale scales fc2's output rows.
    g = _scale_vector(mlp.ls)
    if g is not None:
        w2, b2 = w2 * g[:, None], b2 * g
    act = copy.deepcopy(mlp.act)
    if a == hidden:
        return ResidualFFN(_layer(w1, b1, like), act, _layer(w2, b2, like))
    w_lin = torch.eye(dim, dtype=torch.float64) + w2[:, a:] @ w1[a:]
    b_lin = b2 + w2[:, a:] @ b1[a:]
    linear = _layer(w_lin, b_lin, like)
    if a == 0:
        return linear
    return RePaFFN(linear, _layer(w1[:a], b1[:a], like), act, _layer(w2[:, :a], None, like))


def folded_shell(mlp: ChannelIdleMlp) -> nn.Module:
    """An uninitialised folded module with the structure :func:`fold_mlp` would return (for loading)."""
    like = mlp.fc1
    dim, hidden, a = mlp.in_features, mlp.hidden_features, mlp.act_channels
    act = copy.deepcopy(mlp.act)
    if a == hidden:
        return ResidualFFN(_empty_layer(dim, hidden, True, like), act, _empty_layer(hidden, dim, True, like))
    if a == 0:
        return _empty_layer(dim, dim, True, like)
    return RePaFFN(
        _empty_layer(dim, dim, True, like), _empty_layer(dim, a, True, like), act, _empty_layer(a, dim, False, like)
    )


def reparameterize(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fold every RePaViT FFN of a converted model into plain Linears (arXiv 2505.21847).

    Uses the BatchNorms' running statistics (eval-mode semantics) and returns the model in eval mode.
    Blocks already folded are left as they are. The result is an ordinary module tree (timm
    ``VisionTransformer`` with :class:`RePaBlock`\\ s of Linears) that ``torch.export`` and
    ``torch.compile`` accept and :func:`accel.reparam.save_reparameterized` stores.

    Args:
        model: a model converted with :func:`accel.reparam.to_repavit` (and usually fine-tuned).
        inplace: fold ``model`` itself instead of a deep copy.

    Raises:
        UnsupportedModelError: the model has no RePaViT blocks.
    """
    repa_blocks(model)
    if not inplace:
        model = copy.deepcopy(model)
    for _, block in repa_blocks(model):
        if not is_folded(block.mlp):
            block.mlp = fold_mlp(block.mlp)
    return model.eval()
