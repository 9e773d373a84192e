"""Upstream ``repaswin.py`` layout (``RePaSwin_Tiny/Small/Base``) on timm's ``SwinTransformer``.

Upstream keeps the original Swin names: blocks ``layers.s.blocks.j.{norm1,attn.*,mlp.*}``, patch merging
at the *end* of stage ``s`` (``layers.s.downsample``, timm's ``layers.{s+1}.downsample``), the classifier
``head`` (timm's ``head.fc``) and persistent ``attn_mask`` / ``relative_position_index`` buffers that timm
recomputes.
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

#: Upstream sizes; all: patch 4, window 7, mlp_ratio 4, qkv bias, patch norm, 224 px.
ARCHS: dict[str, dict[str, Any]] = {
    "RePaSwin_Tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
    "RePaSwin_Small": {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]},
    "RePaSwin_Base": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]},
}
COMMON_KWARGS: dict[str, Any] = {"img_size": 224, "patch_size": 4, "window_size": 7, "num_classes": 1000}

_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")


def block_key(key: str) -> tuple[str, str] | None:
    match = _BLOCK.match(key)
    return (f"layers.{match.group(1)}.blocks.{match.group(2)}", match.group(3)) if match else None


def rename_block(rest: str) -> str | None:
    return None if rest in ("attn_mask", "attn.relative_position_index") else rest


def rename_global(key: str) -> str:
    key = _DOWNSAMPLE.sub(lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
    return "head.fc." + key[len("head.") :] if key.startswith("head.") else key


def infer(state: State) -> dict[str, Any]:
    try:
        proj = state["patch_embed.proj.weight"]
        num_classes = int(state["head.weight"].shape[0])
    except KeyError as exc:
        raise UnsupportedModelError(f"not a RePaSwin state dict: missing {exc.args[0]!r}") from None
    blocks = sorted({(int(m.group(1)), int(m.group(2))) for m in map(_BLOCK.match, state) if m})
    stages = 1 + max(s for s, _ in blocks)
    table = state["layers.0.blocks.0.attn.relative_position_bias_table"]
    window = (math.isqrt(table.shape[0]) + 1) // 2
    sizes = {
        "embed_dim": int(proj.shape[0]),
        "patch_size": int(proj.shape[-1]),
        "depths": [sum(1 for s, _ in blocks if s == stage) for stage in range(stages)],
        "num_heads": [
            int(state[f"layers.{s}.blocks.0.attn.relative_position_bias_table"].shape[1]) for s in range(stages)
        ],
        "window_size": window,
        "num_classes": num_classes,
    }
    mask = state.get("layers.0.blocks.1.attn_mask")
    if mask is not None:  # (windows, w*w, w*w) of the first shifted block: the input size
        sizes["img_size"] = math.isqrt(mask.shape[0]) * window * sizes["patch_size"]
    return sizes


def build(sizes: Mapping[str, Any], idle_ratio: float | Sequence[float]) -> nn.Module:
    from timm.models.swin_transformer import SwinTransformer

    model = SwinTransformer(**{**COMMON_KWARGS, **dict(sizes)})
    return to_repavit(model, idle_ratio, inplace=True, act_norm=True)


LAYOUT = OfficialLayout(
    name="swin",
    archs=ARCHS,
    detect=lambda state: "layers.0.blocks.0.attn.relative_position_bias_table" in state,
    block_key=block_key,
    ffn_prefix="mlp.",
    rename_block=rename_block,
    rename_global=rename_global,
    infer=infer,
    build=build,
)
