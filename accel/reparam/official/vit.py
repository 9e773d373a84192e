"""Upstream ``repavit.py`` layout (``RePaViT_Tiny`` ... ``RePaViT_Huge``) on timm's ``VisionTransformer``.

Per block ``i``: ``blocks.i.attn.norm.*`` (the attention's LayerNorm, eps 1e-5) is timm's
``blocks.i.norm1.*``; ``blocks.i.attn.{qkv,proj}`` and ``blocks.i.mlp.*`` keep their names; the other
keys (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``norm_pre``, ``norm``, ``head``) are timm's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

from ...errors import UnsupportedModelError
from ..repavit import to_repavit
from .layout import OfficialLayout, State

ARCHS: dict[str, dict[str, int]] = {
    "RePaViT_Tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "RePaViT_Small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "RePaViT_Base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "RePaViT_Large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    "RePaViT_Huge": {"embed_dim": 1280, "depth": 32, "num_heads": 16},
}
#: Every upstream ViT: patch 16, mlp_ratio 4, qkv bias, pre-norm, class token, 224 px.
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

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def block_key(key: str) -> tuple[str, str] | None:
    match = _BLOCK.match(key)
    return (f"blocks.{match.group(1)}", match.group(2)) if match else None


def rename_block(rest: str) -> str:
    return "norm1." + rest[len("attn.norm.") :] if rest.startswith("attn.norm.") else rest


def infer(state: State) -> dict[str, Any]:
    try:
        embed_dim = int(state["cls_token"].shape[-1])
        patch = int(state["patch_embed.proj.weight"].shape[-1])
        tokens = int(state["pos_embed"].shape[1]) - 1
        num_classes = int(state["head.weight"].shape[0])
    except KeyError as exc:
        raise UnsupportedModelError(f"not a RePaViT state dict: missing {exc.args[0]!r}") from None
    depth = 1 + max((int(m.group(1)) for m in map(_BLOCK.match, state) if m), default=-1)
    sizes = {
        "embed_dim": embed_dim,
        "depth": depth,
        "patch_size": patch,
        "img_size": math.isqrt(tokens) * patch,
        "num_classes": num_classes,
    }
    heads = next((a["num_heads"] for a in ARCHS.values() if a["embed_dim"] == embed_dim and a["depth"] == depth), None)
    return sizes if heads is None else {**sizes, "num_heads": heads}


def build(sizes: Mapping[str, Any], idle_ratio: float | Sequence[float]) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    if "num_heads" not in sizes:
        raise UnsupportedModelError(
            f"no upstream RePaViT model has embed_dim={sizes.get('embed_dim')}, depth={sizes.get('depth')}; pass "
            "arch=dict(embed_dim=..., depth=..., num_heads=...) or a converted model="
        )
    model = VisionTransformer(**{**COMMON_KWARGS, **dict(sizes)})
    to_repavit(model, idle_ratio, inplace=True, act_norm=True)
    for block in model.blocks:
        block.norm1.eps = ATTN_NORM_EPS
    return model


LAYOUT = OfficialLayout(
    name="vit",
    archs=ARCHS,
    detect=lambda state: True,
    block_key=block_key,
    ffn_prefix="mlp.",
    rename_block=rename_block,
    rename_global=lambda key: key,
    infer=infer,
    build=build,
)
