"""Adapter for timm vision transformers (ViT, DeiT and other ``VisionTransformer`` variants)."""

from __future__ import annotations

from ..registry import Adapter, BlockSpec, Component, register_adapter

register_adapter(
    Adapter(
        family="timm_vit",
        title="timm VisionTransformer",
        kind="vit",
        model_classes=(("timm", "VisionTransformer"),),
        block_lists=("blocks",),
        block_specs=(BlockSpec("Block", (Component("attn", "self_attn"), Component("mlp", "ffn"))),),
        cfg_layout="none",
    )
)
