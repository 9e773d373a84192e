"""Upstream ``repapoolformer.py`` layout (``RePaPoolformer_s12`` ... ``RePaPoolformer_m48``) on timm's
``MetaFormer``.

Upstream numbers its stages and downsamplers in one list: ``network.{2s}.j.*`` is stage ``s``'s block
``j`` (timm's ``stages.s.blocks.j``; ``layer_scale_1`` is ``layer_scale1.scale``, the FFN's ``mlp.ls`` is
accel's ``mlp.ls.scale``) and ``network.{2s+1}.proj`` the downsampler before stage ``s+1``. Its head
normalises the whole map before pooling (``norm``), where timm pools first, so the model gets a
:class:`~accel.reparam.families.metaformer.NormThenPool`. Active channels: ``int(h (1 - idle_ratio))``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

from ...errors import UnsupportedModelError
from ..families import metaformer
from ..repavit import check_idle_ratios
from .layout import OfficialLayout, State

ARCHS: dict[str, dict[str, list[int]]] = {
    "RePaPoolformer_s12": {"depths": [2, 2, 6, 2], "dims": [64, 128, 320, 512]},
    "RePaPoolformer_s24": {"depths": [4, 4, 12, 4], "dims": [64, 128, 320, 512]},
    "RePaPoolformer_s36": {"depths": [6, 6, 18, 6], "dims": [64, 128, 320, 512]},
    "RePaPoolformer_m36": {"depths": [6, 6, 18, 6], "dims": [96, 192, 384, 768]},
    "RePaPoolformer_m48": {"depths": [8, 8, 24, 8], "dims": [96, 192, 384, 768]},
}

_BLOCK = re.compile(r"^network\.(\d+)\.(\d+)\.(.+)$")
_DOWNSAMPLE = re.compile(r"^network\.(\d+)\.proj\.")


def block_key(key: str) -> tuple[str, str] | None:
    match = _BLOCK.match(key)
    return (f"stages.{int(match.group(1)) // 2}.blocks.{match.group(2)}", match.group(3)) if match else None


def rename_block(rest: str) -> str:
    return "layer_scale1.scale" if rest == "layer_scale_1" else rest


def rename_global(key: str) -> str:
    key = _DOWNSAMPLE.sub(lambda m: f"stages.{(int(m.group(1)) + 1) // 2}.downsample.conv.", key)
    for old, new in (("patch_embed.proj.", "stem.conv."), ("norm.", "head.global_pool.norm."), ("head.", "head.fc.")):
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def infer(state: State) -> dict[str, Any]:
    blocks = sorted({(int(m.group(1)) // 2, int(m.group(2))) for m in map(_BLOCK.match, state) if m})
    if not blocks or "head.weight" not in state:
        raise UnsupportedModelError("not a RePaPoolformer state dict: no network.<stage>.<block> keys or no head")
    stages = 1 + max(s for s, _ in blocks)
    return {
        "depths": [sum(1 for s, _ in blocks if s == stage) for stage in range(stages)],
        "dims": [int(state[f"network.{2 * s}.0.norm1.weight"].shape[0]) for s in range(stages)],
        "num_classes": int(state["head.weight"].shape[0]),
    }


def build(sizes: Mapping[str, Any], idle_ratio: float | Sequence[float]) -> nn.Module:
    from timm.models.metaformer import GroupNorm1, MetaFormer, Pooling

    sizes = dict(sizes)
    model = MetaFormer(
        depths=sizes.pop("depths"),
        dims=sizes.pop("dims"),
        token_mixers=Pooling,
        mlp_act=nn.GELU,
        mlp_bias=True,
        norm_layers=GroupNorm1,
        layer_scale_init_values=1e-5,
        res_scale_init_values=None,
        downsample_norm=None,
        use_mlp_head=False,
        **sizes,
    )
    model.head.global_pool = metaformer.NormThenPool(GroupNorm1(model.num_features))
    model.head.norm = nn.Identity()
    family = metaformer.FAMILY
    sites = family.sites(model)
    ratios = check_idle_ratios(idle_ratio, len(sites), "load_official_checkpoint idle_ratio")
    for site, ratio in zip(sites, ratios, strict=True):
        hidden = family.hidden(site.block)
        site.replace(family.convert_block(site.block, ratio, True, int(hidden * (1 - ratio))))
    return model


LAYOUT = OfficialLayout(
    name="metaformer",
    archs=ARCHS,
    detect=lambda state: any(key.startswith("network.0.0.") for key in state),
    block_key=block_key,
    ffn_prefix="mlp.",
    rename_block=rename_block,
    rename_global=rename_global,
    infer=infer,
    build=build,
)
