"""RePaViT for timm ``SwinTransformer`` (upstream ``repaswin.py``; arXiv 2505.21847).

Algorithm: in every shifted-window block the pre-FFN LayerNorm becomes a BatchNorm over channels and
only the first ``ceil(h (1 - idle_ratio))`` hidden channels are activated; the FFN owns its shortcut
and folds to ``W_lin x + b_lin + W2[:, :a] act(W1[:a] x + b1[:a])`` on the (B, H, W, C) map.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock

from ..modules import RePaFFNBlock
from . import BlockSite, Family
from .common import channel_idle_mlp, mlp_problem, swap_ffn


class RePaSwinBlock(SwinTransformerBlock, RePaFFNBlock):
    """A timm Swin block whose ``mlp`` (a RePaViT FFN) includes the FFN's shortcut."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self._attn(self.norm1(x)))
        return self.mlp(x)


def sites(model: nn.Module) -> list[BlockSite]:
    return [
        BlockSite(f"layers.{s}.blocks.{j}", stage.blocks, j)
        for s, stage in enumerate(model.layers)
        for j in range(len(stage.blocks))
    ]


def block_problem(block: nn.Module) -> str | None:
    if not isinstance(block, SwinTransformerBlock) or type(block).forward is not SwinTransformerBlock.forward:
        return f"it is a {type(block).__name__}, not a timm SwinTransformerBlock"
    problem = mlp_problem(block.mlp)
    if problem:
        return problem
    if not isinstance(block.norm2, nn.LayerNorm):
        return f"its pre-FFN norm is a {type(block.norm2).__name__}, not a LayerNorm"
    return None


def convert_block(block: nn.Module, idle_ratio: float, act_norm: bool, act_channels: int) -> RePaSwinBlock:
    ffn = channel_idle_mlp(block.mlp, block.norm2, act_channels, act_norm, None, block.drop_path2, block.training)
    return swap_ffn(block, RePaSwinBlock, ffn, idle_ratio, act_norm, drop=("norm2", "drop_path2"))


def architecture(model: nn.Module) -> dict:
    """``SwinTransformer`` constructor kwargs read back from the instance."""
    first = model.layers[0].blocks[0]
    return {
        "img_size": list(model.patch_embed.img_size),
        "patch_size": list(model.patch_embed.patch_size),
        "in_chans": model.patch_embed.proj.in_channels,
        "num_classes": model.num_classes,
        "global_pool": model.global_pool,
        "embed_dim": model.embed_dim,
        "depths": [len(stage.blocks) for stage in model.layers],
        "num_heads": [stage.blocks[0].attn.num_heads for stage in model.layers],
        "window_size": list(first.window_size),
        "mlp_ratio": FAMILY.hidden(first) / model.embed_dim,
        "qkv_bias": first.attn.qkv.bias is not None,
    }


FAMILY = Family(
    name="swin",
    title="timm SwinTransformer (Swin-T/S/B/L) with LayerNorm before a timm `Mlp` FFN",
    model_class=("timm.models.swin_transformer", "SwinTransformer"),
    sites=sites,
    block_problem=block_problem,
    convert_block=convert_block,
    architecture=architecture,
)

__all__ = ["FAMILY", "RePaSwinBlock", "SwinTransformer"]
