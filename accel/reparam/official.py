"""Load the official RePaViT checkpoints (Xu et al., arXiv 2505.21847; github.com/Ackesnal/RePaViT).

Algorithm: rename the upstream ``RePaViT_*`` state-dict keys onto a timm ``VisionTransformer``
converted by :func:`accel.reparam.to_repavit` (pre-norm, BatchNorm FFNs), then load strictly.

Upstream layout per block ``i`` (facts from the public ``repavit.py``)::

    blocks.i.attn.norm.{weight,bias}            -> blocks.i.norm1.*   (nn.LayerNorm, eps 1e-5)
    blocks.i.attn.{qkv,proj}.{weight,bias}      -> blocks.i.attn.{qkv,proj}.*
    blocks.i.mlp.norm1.* (BatchNorm1d(d))       -> blocks.i.mlp.norm1.*
    blocks.i.mlp.fc1.*, mlp.fc2.*               -> blocks.i.mlp.fc1.*, mlp.fc2.*
    blocks.i.mlp.norm2.* (BatchNorm1d(4d))      -> blocks.i.mlp.norm2.*

Folded upstream checkpoints (after their ``reparam()``) hold ``mlp.fc1`` (d->d, the merged linear
path), ``mlp.fc2`` (d->a) and ``mlp.fc3`` (a->d, no bias); they map to ``mlp.linear``, ``mlp.fc1`` and
``mlp.fc2`` of :class:`~accel.reparam.modules.RePaFFN` (``mlp`` itself when ``a = 0``). The other
keys (``cls_token``, ``pos_embed``, ``patch_embed.proj.weight``, ``norm_pre``, ``norm``, ``head``) are
timm's own. Checkpoints trained with ``--feature_norm=LayerNorm`` cannot be folded and are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError, UnsupportedModelError
from .fold import folded_shell
from .modules import ChannelIdleMlp, RePaBlock, RePaFFN, ResidualFFN
from .repavit import _unwrap, check_idle_ratio, repa_blocks, to_repavit

#: The upstream model sizes (all: patch 16, mlp_ratio 4, qkv bias, pre-norm, class token, 224 px).
OFFICIAL_ARCHS: dict[str, dict[str, int]] = {
    "RePaViT_Tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "RePaViT_Small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "RePaViT_Base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "RePaViT_Large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "RePaViT_Huge": {"embed_dim": 1280, "depth": 32, "num_heads": 16},
}
COMMON_KWARGS: dict[str, Any] = {
    "img_size": 224,
    "patch_size": 16,
    "in_chans": 3,
    "num_classes": 1000,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "pre_norm": True,
    "fc_norm": False,
    "class_token": True,
    "global_pool": "token",
}
#: Upstream's attention pre-norm is ``nn.LayerNorm(dim)`` with PyTorch's default eps.
ATTN_NORM_EPS = 1e-5

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def build_official_model(
    arch: str | Mapping[str, Any] = "RePaViT_Base", idle_ratio: float | Sequence[float] = 0.75, **overrides: Any
) -> nn.Module:
    """A random-initialised timm ViT in converted RePaViT form with the layout of an upstream model.

    Args:
        arch: an upstream name (``"RePaViT_Tiny"`` ... ``"RePaViT_Huge"``) or ``VisionTransformer``
            kwargs (``embed_dim``, ``depth``, ``num_heads``, ...) for other sizes.
        idle_ratio: the idle ratio the checkpoint was trained with (upstream default 0.75), or one per block.
        **overrides: further ``VisionTransformer`` kwargs (``num_classes``, ``img_size``, ...).
    """
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(arch, str):
        if arch not in OFFICIAL_ARCHS:
            raise ConfigError(f"unknown RePaViT architecture {arch!r}; known: {', '.join(OFFICIAL_ARCHS)}")
        arch = OFFICIAL_ARCHS[arch]
    model = VisionTransformer(**{**COMMON_KWARGS, **dict(arch), **overrides})
    to_repavit(model, idle_ratio, inplace=True, act_norm=True)
    for block in model.blocks:
        block.norm1.eps = ATTN_NORM_EPS
    return model.eval()


def _unwrap_state(source: Any) -> dict[str, torch.Tensor]:
    if isinstance(source, str):
        if source.endswith(".safetensors"):
            from safetensors.torch import load_file

            source = load_file(source)
        else:
            try:
                source = torch.load(source, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise UnsupportedModelError(
                    f"cannot read {source} with torch.load(weights_only=True) ({type(exc).__name__}); upstream "
                    "checkpoints also pickle their training arguments. In an environment you trust, save "
                    "checkpoint['model'] with safetensors and pass that file (or the dict) instead"
                ) from None
    if not isinstance(source, Mapping):
        raise UnsupportedModelError(f"expected a state dict, a checkpoint dict or a path, got {type(source).__name__}")
    if "model" in source and isinstance(source["model"], Mapping):
        source = source["model"]
    state = {}
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            continue
        state[key[len("module.") :] if key.startswith("module.") else key] = value
    return state


def official_to_accel_keys(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[int, int]]:
    """Rename an upstream state dict to accel's layout.

    Returns ``(state, folded)`` where ``folded`` maps the index of each block stored in folded form
    to its number of active channels.
    """
    state = _unwrap_state(state_dict)
    per_block: dict[int, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            per_block.setdefault(int(match.group(1)), {})[match.group(2)] = value
        else:
            out[key] = value
    folded: dict[int, int] = {}
    for i, keys in sorted(per_block.items()):
        if "mlp.norm.weight" in keys:
            raise UnsupportedModelError(
                f"blocks.{i} has a LayerNorm FFN norm (upstream --feature_norm=LayerNorm): such checkpoints "
                "cannot be structurally reparameterized; use one trained with --feature_norm=BatchNorm"
            )
        is_folded = (
            "mlp.norm1.running_mean" not in keys
            and "mlp.fc1.weight" in keys
            and keys["mlp.fc1.weight"].shape[0] == keys["mlp.fc1.weight"].shape[1]
        )
        if is_folded:
            folded[i] = keys["mlp.fc2.weight"].shape[0] if "mlp.fc3.weight" in keys else 0
        for rest, value in keys.items():
            out[f"blocks.{i}.{_rename(rest, is_folded, folded.get(i, 0) == 0)}"] = value
    return out, folded


def _rename(rest: str, folded: bool, collapsed: bool) -> str:
    if rest.startswith("attn.norm."):
        return "norm1." + rest[len("attn.norm.") :]
    if folded:
        if collapsed and rest.startswith("mlp.fc1."):
            return "mlp." + rest[len("mlp.fc1.") :]
        for old, new in (("mlp.fc1.", "mlp.linear."), ("mlp.fc2.", "mlp.fc1."), ("mlp.fc3.", "mlp.fc2.")):
            if rest.startswith(old):
                return new + rest[len(old) :]
    return rest


def _infer_sizes(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    try:
        embed_dim = int(state["cls_token"].shape[-1])
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        tokens = int(state["pos_embed"].shape[1]) - 1
        num_classes = int(state["head.weight"].shape[0])
    except KeyError as exc:
        raise UnsupportedModelError(f"not a RePaViT state dict: missing {exc.args[0]!r}") from None
    depth = 1 + max((int(m.group(1)) for m in map(_BLOCK_KEY.match, state) if m), default=-1)
    return {
        "embed_dim": embed_dim,
        "depth": depth,
        "patch_size": patch,
        "img_size": math.isqrt(tokens) * patch,
        "num_classes": num_classes,
    }


def infer_arch(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``VisionTransformer`` kwargs read from a (renamed) upstream state dict; heads come from the known sizes."""
    sizes = _infer_sizes(state)
    heads = next(
        (
            a["num_heads"]
            for a in OFFICIAL_ARCHS.values()
            if a["embed_dim"] == sizes["embed_dim"] and a["depth"] == sizes["depth"]
        ),
        None,
    )
    if heads is None:
        raise UnsupportedModelError(
            f"no upstream RePaViT model has embed_dim={sizes['embed_dim']}, depth={sizes['depth']}; pass "
            "arch=dict(embed_dim=..., depth=..., num_heads=...) or a converted model="
        )
    return {**sizes, "num_heads": heads}


def load_official_checkpoint(
    source: Any,
    idle_ratio: float | Sequence[float] = 0.75,
    arch: str | Mapping[str, Any] | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """Load an upstream RePaViT checkpoint into a converted timm ViT (built unless ``model`` is given).

    Args:
        source: a state dict, an upstream checkpoint dict (``{"model": ...}``), a ``.safetensors``
            path, or a ``.pth`` path readable with ``torch.load(weights_only=True)``.
        idle_ratio: the ratio the checkpoint was trained with (upstream ``--idle_ratio``; 0.75 default),
            or the list of per-block ratios of a run with upstream ``--heuristic`` (e.g. ``linear``).
            Training-form checkpoints cannot reveal it (every channel is stored either way): pass the
            ratios the run used. Folded ones are checked against it block by block.
        arch: an upstream name or ``VisionTransformer`` kwargs; inferred from the tensors if None.
        model: a model converted with :func:`accel.reparam.to_repavit` to load into (in place).

    Returns:
        The converted model in eval mode; folded blocks stay folded, others can be folded with
        :func:`accel.reparam.reparameterize`.
    """
    if not isinstance(idle_ratio, (list, tuple)):
        idle_ratio = check_idle_ratio(idle_ratio, "load_official_checkpoint idle_ratio")
    state, folded = official_to_accel_keys(source)
    if model is None:
        if arch is None:
            kwargs = infer_arch(state)
        elif isinstance(arch, str):
            if arch not in OFFICIAL_ARCHS:
                raise ConfigError(f"unknown RePaViT architecture {arch!r}; known: {', '.join(OFFICIAL_ARCHS)}")
            kwargs = {**_infer_sizes(state), **OFFICIAL_ARCHS[arch]}
        else:
            kwargs = {**_infer_sizes(state), **dict(arch)}
        model = build_official_model(kwargs, idle_ratio)
    blocks = dict(repa_blocks(model))
    for i, act_channels in folded.items():
        block = blocks.get(i)
        if block is None:
            raise UnsupportedModelError(f"the checkpoint has blocks.{i}, the model does not")
        if not isinstance(block.mlp, ChannelIdleMlp):
            continue
        if block.mlp.act_channels != act_channels and act_channels != 0:
            raise ConfigError(
                f"blocks.{i} of the checkpoint has {act_channels} active channels, idle_ratio={idle_ratio} gives "
                f"{block.mlp.act_channels}; pass the idle_ratio the checkpoint was trained with"
            )
        block.mlp = folded_shell(block.mlp)
        if act_channels == 0 and not isinstance(block.mlp, nn.Linear):
            raise ConfigError(
                f"blocks.{i} of the checkpoint is a single linear (idle_ratio 1); "
                f"idle_ratio={idle_ratio} does not match"
            )
    inner = _unwrap(model)
    _fix_all_active(inner, state, folded)
    result = inner.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UnsupportedModelError(
            "the checkpoint does not match the RePaViT model: missing keys "
            f"{result.missing_keys[:8]}, unexpected keys {result.unexpected_keys[:8]}"
        )
    return model.eval()


def _fix_all_active(model: nn.Module, state: dict[str, torch.Tensor], folded: dict[int, int]) -> None:
    """Upstream folds idle ratio 0 into ``fc1 = I`` plus fc2/fc3; accel keeps ``x + fc2(act(fc1 x))``."""
    for i in folded:
        block = model.blocks[i]
        if isinstance(block, RePaBlock) and isinstance(block.mlp, ResidualFFN):
            eye = state.pop(f"blocks.{i}.mlp.linear.weight")
            if not torch.allclose(eye.float(), torch.eye(eye.shape[0]), atol=1e-6):
                raise UnsupportedModelError(
                    f"blocks.{i}: a folded FFN with every channel active must have an identity linear path"
                )
            state[f"blocks.{i}.mlp.fc2.bias"] = state.pop(f"blocks.{i}.mlp.linear.bias")
        elif isinstance(block, RePaBlock) and not isinstance(block.mlp, (RePaFFN, nn.Linear)):
            raise UnsupportedModelError(f"blocks.{i}: unexpected folded structure {type(block.mlp).__name__}")
