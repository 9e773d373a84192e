"""Upstream ``repamlpmixer.py`` layout (``RePaMlpMixer_s32`` ... ``RePaMlpMixer_l32``) on timm's ``MlpMixer``.

Upstream's token-mixing MLP carries its own LayerNorm over the *token* axis (``blocks.i.mlp_tokens.norm``,
eps 1e-5), which becomes a :class:`~accel.reparam.families.mixer.TokenAxisLayerNorm` in timm's
``blocks.i.norm1``; its channel MLP ``blocks.i.mlp_channels`` is the RePaViT FFN (accel's ``blocks.i.mlp``)
and always keeps ``dim`` hidden channels active.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn

from ...errors import ConfigError, UnsupportedModelError
from ..families.mixer import TokenAxisLayerNorm
from ..repavit import check_idle_ratios, to_repavit
from .layout import OfficialLayout, State

ARCHS: dict[str, dict[str, int]] = {
    "RePaMlpMixer_s32": {"patch_size": 32, "num_blocks": 8, "embed_dim": 512},
    "RePaMlpMixer_s16": {"patch_size": 16, "num_blocks": 8, "embed_dim": 512},
    "RePaMlpMixer_b32": {"patch_size": 32, "num_blocks": 12, "embed_dim": 768},
    "RePaMlpMixer_b16": {"patch_size": 16, "num_blocks": 12, "embed_dim": 768},
    "RePaMlpMixer_l16": {"patch_size": 16, "num_blocks": 24, "embed_dim": 1024},
    "RePaMlpMixer_l32": {"patch_size": 32, "num_blocks": 24, "embed_dim": 1024},
}
COMMON_KWARGS: dict[str, Any] = {"img_size": 224, "num_classes": 1000, "mlp_ratio": (0.5, 4.0)}
#: Upstream's token-mixing LayerNorm is ``nn.LayerNorm(seq_len)`` with PyTorch's default eps.
TOKEN_NORM_EPS = 1e-5

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def block_key(key: str) -> tuple[str, str] | None:
    match = _BLOCK.match(key)
    return (f"blocks.{match.group(1)}", match.group(2)) if match else None


def rename_block(rest: str) -> str:
    return "norm1." + rest[len("mlp_tokens.norm.") :] if rest.startswith("mlp_tokens.norm.") else rest


def infer(state: State) -> dict[str, Any]:
    try:
        proj = state["stem.proj.weight"]
        tokens = state["blocks.0.mlp_tokens.fc1.weight"]
        num_classes = int(state["head.weight"].shape[0])
    except KeyError as exc:
        raise UnsupportedModelError(f"not a RePaMlpMixer state dict: missing {exc.args[0]!r}") from None
    dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    channels = state.get("blocks.0.mlp_channels.norm2.weight")
    hidden = int(channels.shape[0]) if channels is not None else 4 * dim  # folded: upstream's 4x width
    return {
        "embed_dim": dim,
        "patch_size": patch,
        "num_blocks": 1 + max(int(m.group(1)) for m in map(_BLOCK.match, state) if m),
        "img_size": math.isqrt(int(tokens.shape[1])) * patch,
        "mlp_ratio": (tokens.shape[0] / dim, hidden / dim),
        "num_classes": num_classes,
    }


def build(sizes: Mapping[str, Any], idle_ratio: float | Sequence[float]) -> nn.Module:
    from timm.models.mlp_mixer import MlpMixer

    model = MlpMixer(**{**COMMON_KWARGS, **dict(sizes)})
    seq_len = model.stem.num_patches
    dim = model.embed_dim
    ratios = check_idle_ratios(idle_ratio, len(model.blocks), "load_official_checkpoint idle_ratio")
    for i, (block, ratio) in enumerate(zip(model.blocks, ratios, strict=True)):
        upstream = 1 - dim / block.mlp_channels.fc1.out_features
        if not math.isclose(ratio, upstream, abs_tol=1e-9):
            raise ConfigError(
                f"upstream RePaMlpMixer keeps {dim} of {block.mlp_channels.fc1.out_features} channels active "
                f"(idle ratio {upstream:g}), but blocks.{i} was given idle_ratio={ratio}"
            )
        block.norm1 = TokenAxisLayerNorm(seq_len, eps=TOKEN_NORM_EPS)
    return to_repavit(model, ratios, inplace=True, act_norm=True)


LAYOUT = OfficialLayout(
    name="mixer",
    archs=ARCHS,
    detect=lambda state: "blocks.0.mlp_tokens.fc1.weight" in state,
    block_key=block_key,
    ffn_prefix="mlp_channels.",
    rename_block=rename_block,
    rename_global=lambda key: key,
    infer=infer,
    build=build,
)
