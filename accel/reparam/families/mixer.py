"""RePaViT for timm ``MlpMixer`` (upstream ``repamlpmixer.py``; arXiv 2505.21847).

Algorithm: the channel-mixing MLP of every block gets RePaViT's channel-idle form (BatchNorm in, the
first ``a`` hidden channels activated, BatchNorm after, shortcut inside) and folds to Linears; the
token-mixing MLP is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.mlp_mixer import MixerBlock, MlpMixer

from ..modules import RePaFFNBlock
from . import BlockSite, Family
from .common import channel_idle_mlp, mlp_problem, swap_ffn


class RePaMixerBlock(MixerBlock, RePaFFNBlock):
    """A timm Mixer block whose channel MLP (``mlp``, a RePaViT FFN) includes its shortcut."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2))
        return self.mlp(x)


class TokenAxisLayerNorm(nn.LayerNorm):
    """LayerNorm over the token axis of ``(B, N, C)``: upstream RePaMlpMixer normalises the token-mixing
    MLP's input per channel across tokens (its ``mlp_tokens.norm``), where timm normalises per token."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def sites(model: nn.Module) -> list[BlockSite]:
    return [BlockSite(f"blocks.{i}", model.blocks, i) for i in range(len(model.blocks))]


def block_problem(block: nn.Module) -> str | None:
    if not isinstance(block, MixerBlock) or type(block).forward is not MixerBlock.forward:
        return f"it is a {type(block).__name__}, not a timm MixerBlock (ResMLP and gMLP blocks are not supported)"
    problem = mlp_problem(block.mlp_channels)
    if problem:
        return problem
    if not isinstance(block.norm2, nn.LayerNorm):
        return f"its pre-FFN norm is a {type(block.norm2).__name__}, not a LayerNorm"
    return None


def convert_block(block: nn.Module, idle_ratio: float, act_norm: bool, act_channels: int) -> RePaMixerBlock:
    ffn = channel_idle_mlp(
        block.mlp_channels, block.norm2, act_channels, act_norm, None, block.drop_path, block.training
    )
    return swap_ffn(block, RePaMixerBlock, ffn, idle_ratio, act_norm, drop=("norm2", "mlp_channels"))


def architecture(model: nn.Module) -> dict:
    """``MlpMixer`` constructor kwargs read back from the instance."""
    first = model.blocks[0]
    dim = model.embed_dim
    return {
        "num_classes": model.num_classes,
        "img_size": list(model.stem.img_size),
        "in_chans": model.stem.proj.in_channels,
        "patch_size": list(model.stem.patch_size),
        "num_blocks": len(model.blocks),
        "embed_dim": dim,
        "mlp_ratio": [first.mlp_tokens.fc1.out_features / dim, FAMILY.hidden(first) / dim],
        "global_pool": model.global_pool,
        "stem_norm": not isinstance(model.stem.norm, nn.Identity),
    }


FAMILY = Family(
    name="mixer",
    title="timm MlpMixer (Mixer-S/B/L) with `MixerBlock`s: LayerNorm before a timm `Mlp` channel MLP",
    model_class=("timm.models.mlp_mixer", "MlpMixer"),
    sites=sites,
    block_problem=block_problem,
    convert_block=convert_block,
    architecture=architecture,
    ffn_name="mlp_channels",
)

__all__ = ["FAMILY", "MlpMixer", "RePaMixerBlock", "TokenAxisLayerNorm"]
