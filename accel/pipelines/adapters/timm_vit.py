"""Adapters for timm vision backbones: ``VisionTransformer`` (ViT, DeiT, ...), ``SwinTransformer``,
``MlpMixer`` and ``MetaFormer`` (PoolFormer). Their one plugin is RePaViT (kind ``vit``)."""

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
register_adapter(
    Adapter(
        family="timm_swin",
        title="timm SwinTransformer",
        kind="vit",
        model_classes=(("timm", "SwinTransformer"),),
        block_lists=("layers.*.blocks",),
        block_specs=(BlockSpec("SwinTransformerBlock", (Component("attn", "self_attn"), Component("mlp", "ffn"))),),
        cfg_layout="none",
    )
)
register_adapter(
    Adapter(
        family="timm_mixer",
        title="timm MlpMixer",
        kind="vit",
        model_classes=(("timm", "MlpMixer"),),
        block_lists=("blocks",),
        block_specs=(BlockSpec("MixerBlock", (Component("mlp_channels", "ffn"),)),),
        cfg_layout="none",
    )
)
register_adapter(
    Adapter(
        family="timm_metaformer",
        title="timm MetaFormer (PoolFormer)",
        kind="vit",
        model_classes=(("timm", "MetaFormer"),),
        block_lists=("stages.*.blocks",),
        block_specs=(BlockSpec("MetaFormerBlock", (Component("mlp", "ffn"),)),),
        cfg_layout="none",
    )
)
