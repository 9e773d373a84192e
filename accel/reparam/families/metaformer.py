"""RePaViT for timm ``MetaFormer`` / PoolFormer (upstream ``repapoolformer.py``; arXiv 2505.21847).

Algorithm: in every MetaFormer block the pre-FFN norm (one-group GroupNorm or LayerNorm) becomes a
BatchNorm and only the first ``a`` hidden channels of the pointwise MLP are activated; LayerScale and
the shortcut move into the FFN, which folds to 1x1 convolutions on the (B, C, H, W) map.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.metaformer import MetaFormer, MetaFormerBlock

from ..modules import RePaFFNBlock
from . import BlockSite, Family
from .common import channel_idle_mlp, mlp_problem, norm_problem, swap_ffn


class RePaMetaFormerBlock(MetaFormerBlock, RePaFFNBlock):
    """A timm MetaFormer block whose ``mlp`` (a RePaViT FFN with LayerScale) includes its shortcut."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.layer_scale1(self.drop_path1(self.token_mixer(self.norm1(x))))
        return self.mlp(x)


class NormThenPool(nn.Module):
    """Upstream PoolFormer's head input: its final one-group GroupNorm over the whole map, then the mean
    over positions (timm pools first and normalises the pooled vector, a different function)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x).mean((-2, -1), keepdim=True)


def sites(model: nn.Module) -> list[BlockSite]:
    return [
        BlockSite(f"stages.{s}.blocks.{j}", stage.blocks, j)
        for s, stage in enumerate(model.stages)
        for j in range(len(stage.blocks))
    ]


def block_problem(block: nn.Module) -> str | None:
    if not isinstance(block, MetaFormerBlock) or type(block).forward is not MetaFormerBlock.forward:
        return f"it is a {type(block).__name__}, not a timm MetaFormerBlock"
    problem = mlp_problem(block.mlp) or norm_problem(block.norm2)
    if problem:
        return problem
    if not isinstance(block.res_scale2, nn.Identity):
        return "its FFN shortcut is scaled (res_scale, as in ConvFormer/CAFormer), which RePaViT does not fold"
    return None


def convert_block(block: nn.Module, idle_ratio: float, act_norm: bool, act_channels: int) -> RePaMetaFormerBlock:
    ffn = channel_idle_mlp(
        block.mlp, block.norm2, act_channels, act_norm, block.layer_scale2, block.drop_path2, block.training
    )
    drop = ("norm2", "drop_path2", "layer_scale2", "res_scale2")
    return swap_ffn(block, RePaMetaFormerBlock, ffn, idle_ratio, act_norm, drop=drop)


def architecture(model: nn.Module) -> dict:
    """The kwargs that rebuild a MetaFormer together with its timm model name (its layers are not JSON,
    so a variant with other depths or widths is reloaded into a model passed by the caller)."""
    return {"num_classes": model.num_classes, "in_chans": model.stem.conv.in_channels}


FAMILY = Family(
    name="metaformer",
    title=(
        "timm MetaFormer (PoolFormer v1/v2, ConvFormer/CAFormer stages without a scaled FFN shortcut) with a "
        "one-group GroupNorm or LayerNorm before a timm `Mlp` FFN"
    ),
    model_class=("timm.models.metaformer", "MetaFormer"),
    sites=sites,
    block_problem=block_problem,
    convert_block=convert_block,
    architecture=architecture,
)

__all__ = ["FAMILY", "MetaFormer", "NormThenPool", "RePaMetaFormerBlock"]
