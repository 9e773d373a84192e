"""Adapter for ``UNet2DConditionModel`` (SD 1.x/2.x, SDXL): the U-Net's skip structure for DeepCache."""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..registry import Adapter, BlockSpec, Component, register_adapter


@dataclasses.dataclass(frozen=True)
class UNetAdapter(Adapter):
    """U-Nets have no flat block list; DeepCache asks for the skip branches instead.

    A *branch* is one skip connection: down block ``i``'s layer ``j`` output feeds up block
    ``n-1-i``'s layer ``L-j`` (where up blocks have one more layer than down blocks). Branch ids
    count skips from the shallowest: branch 0 is the first down layer's skip.
    """

    def branches(self, unet: nn.Module) -> list[tuple[int, int]]:
        """``(down block index, layer index)`` of every skip branch, shallowest first."""
        out = []
        for i, block in enumerate(unet.down_blocks):
            for j in range(len(block.resnets)):
                out.append((i, j))
        return out

    def blocks(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        out: list[tuple[str, nn.Module]] = []
        for i, block in enumerate(model.down_blocks):
            out.append((f"down_blocks.{i}", block))
        if getattr(model, "mid_block", None) is not None:
            out.append(("mid_block", model.mid_block))
        for i, block in enumerate(model.up_blocks):
            out.append((f"up_blocks.{i}", block))
        return out


register_adapter(UNetAdapter(
    family="unet", title="Stable Diffusion U-Net (SD 1.x/2.x, SDXL)", kind="unet",
    model_classes=(("diffusers", "UNet2DConditionModel"),),
    block_specs=(BlockSpec("BasicTransformerBlock", (
        Component("attn1", "self_attn"), Component("attn2", "cross_attn"), Component("ff", "ffn"))),),
))
