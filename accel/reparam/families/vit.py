"""RePaViT for timm ``VisionTransformer`` (ViT, DeiT, DeiT-III, registers; arXiv 2505.21847).

Algorithm: each pre-norm ``Block`` becomes a :class:`~accel.reparam.modules.RePaBlock` whose FFN
(BatchNorm in, ``a`` active channels, BatchNorm after, LayerScale and shortcut inside) folds to Linears.
"""

from __future__ import annotations

import torch.nn as nn

from ..modules import RePaBlock
from . import BlockSite, Family
from .common import channel_idle_mlp, mlp_problem


def sites(model: nn.Module) -> list[BlockSite]:
    return [BlockSite(f"blocks.{i}", model.blocks, i) for i in range(len(model.blocks))]


def block_problem(block: nn.Module) -> str | None:
    from timm.layers import LayerScale
    from timm.models.vision_transformer import Block

    if not isinstance(block, Block) or type(block).forward is not Block.forward:
        return f"it is a {type(block).__name__}, not a pre-norm timm Block"
    problem = mlp_problem(getattr(block, "mlp", None))
    if problem:
        return problem
    if isinstance(block.mlp.fc1, nn.Conv2d):
        return "its Mlp uses convolutions (use_conv=True)"
    if not isinstance(block.norm2, nn.LayerNorm):
        return f"its pre-FFN norm is a {type(block.norm2).__name__}, not a LayerNorm"
    if not isinstance(block.ls2, nn.Identity | LayerScale):
        return f"its FFN layer scale is a {type(block.ls2).__name__}"
    return None


def convert_block(block: nn.Module, idle_ratio: float, act_norm: bool, act_channels: int) -> RePaBlock:
    """The :class:`RePaBlock` of a timm ``Block``: the attention half is shared, the FFN half copied."""
    ffn = channel_idle_mlp(block.mlp, block.norm2, act_channels, act_norm, block.ls2, block.drop_path2, block.training)
    return RePaBlock(block.norm1, block.attn, block.ls1, block.drop_path1, ffn, idle_ratio, act_norm)


def architecture(model: nn.Module) -> dict:
    """``VisionTransformer`` constructor kwargs read back from the instance (best effort)."""
    block = model.blocks[0]
    attn = block.attn
    pe = model.patch_embed
    return {
        "img_size": list(pe.img_size) if pe.img_size is not None else None,
        "patch_size": list(pe.patch_size),
        "in_chans": pe.proj.in_channels,
        "num_classes": model.num_classes,
        "global_pool": model.global_pool,
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": attn.num_heads,
        "mlp_ratio": FAMILY.hidden(block) / model.embed_dim,
        "qkv_bias": attn.qkv.bias is not None,
        "qk_norm": not isinstance(getattr(attn, "q_norm", nn.Identity()), nn.Identity),
        "proj_bias": attn.proj.bias is not None,
        "init_values": 1e-5 if not isinstance(block.ls1, nn.Identity) else None,
        "class_token": model.cls_token is not None,
        "reg_tokens": int(getattr(model, "num_reg_tokens", 0)),
        "no_embed_class": bool(model.no_embed_class),
        "pos_embed": "learn" if model.pos_embed is not None else "none",
        "pre_norm": not isinstance(model.norm_pre, nn.Identity),
        "fc_norm": not isinstance(model.fc_norm, nn.Identity),
        "final_norm": not (isinstance(model.norm, nn.Identity) and isinstance(model.fc_norm, nn.Identity)),
        "dynamic_img_size": bool(getattr(model, "dynamic_img_size", False)),
    }


FAMILY = Family(
    name="vit",
    title=(
        "timm VisionTransformer (ViT, DeiT and DeiT distilled, DeiT-III, ViT with registers, ...) with pre-norm "
        "`Block`s: a LayerNorm before a timm `Mlp` FFN (fc1 -> act -> fc2)"
    ),
    model_class=("timm.models.vision_transformer", "VisionTransformer"),
    sites=sites,
    block_problem=block_problem,
    convert_block=convert_block,
    architecture=architecture,
)
