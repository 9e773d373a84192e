"""Adapter for ``UNet2DConditionModel`` (SD 1.x/2.x, SDXL): the U-Net's skip structure for DeepCache."""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..registry import Adapter, BlockSpec, Component, register_adapter


@dataclasses.dataclass(frozen=True)
class SkipUnit:
    """Modules of one U-Net layer and the skip connection it produces (down) or consumes (up)."""

    name: str
    skip: int  # skip index S_k (S_0 is conv_in's output)
    modules: tuple[nn.Module, ...]


@dataclasses.dataclass(frozen=True)
class SkipLayout:
    """The U-Net's skip structure: down units (produce S_1..S_K), mid block, up units (consume S_K..S_0)
    and the up blocks' upsamplers (with the smallest skip index their block consumes)."""

    down: tuple[SkipUnit, ...]
    mid: nn.Module | None
    up: tuple[SkipUnit, ...]
    upsamplers: tuple[SkipUnit, ...]

    @property
    def num_skips(self) -> int:
        return len(self.down) + 1


@dataclasses.dataclass(frozen=True)
class UNetAdapter(Adapter):
    """U-Nets have no flat block list; DeepCache asks for the skip layout instead.

    Skips are numbered in execution order: S_0 is ``conv_in``'s output, S_1..S_K the outputs of
    every down layer (resnet + attention) and downsampler. Up layers consume them in reverse.
    DeepCache's branch ``b`` keeps the layers producing or consuming ``S_0..S_b`` live, as the official
    package numbers them: branch 0 keeps only ``conv_in`` and the last up layer live.
    """

    def skip_layout(self, unet: nn.Module) -> SkipLayout:
        down: list[SkipUnit] = []
        for i, block in enumerate(unet.down_blocks):
            attentions = getattr(block, "attentions", None) or []
            for j, resnet in enumerate(block.resnets):
                mods = (resnet,) + ((attentions[j],) if j < len(attentions) else ())
                down.append(SkipUnit(f"down_blocks.{i}.layer{j}", len(down) + 1, mods))
            for sampler in getattr(block, "downsamplers", None) or []:
                down.append(SkipUnit(f"down_blocks.{i}.downsampler", len(down) + 1, (sampler,)))
        k = len(down)
        up: list[SkipUnit] = []
        samplers: list[SkipUnit] = []
        for u, block in enumerate(unet.up_blocks):
            attentions = getattr(block, "attentions", None) or []
            for layer, resnet in enumerate(block.resnets):
                mods = (resnet,) + ((attentions[layer],) if layer < len(attentions) else ())
                up.append(SkipUnit(f"up_blocks.{u}.layer{layer}", k - len(up), mods))
            for sampler in getattr(block, "upsamplers", None) or []:
                samplers.append(SkipUnit(f"up_blocks.{u}.upsampler", up[-1].skip, (sampler,)))
        if len(up) != k + 1:
            from ...errors import UnsupportedModelError

            raise UnsupportedModelError(
                f"this U-Net's up path consumes {len(up)} skips but its down path makes {k + 1}; DeepCache needs the "
                "standard UNet2DConditionModel skip structure"
            )
        return SkipLayout(tuple(down), getattr(unet, "mid_block", None), tuple(up), tuple(samplers))

    def blocks(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        out: list[tuple[str, nn.Module]] = []
        for i, block in enumerate(model.down_blocks):
            out.append((f"down_blocks.{i}", block))
        if getattr(model, "mid_block", None) is not None:
            out.append(("mid_block", model.mid_block))
        for i, block in enumerate(model.up_blocks):
            out.append((f"up_blocks.{i}", block))
        return out


register_adapter(
    UNetAdapter(
        family="unet",
        title="Stable Diffusion U-Net (SD 1.x/2.x, SDXL)",
        kind="unet",
        model_classes=(("diffusers", "UNet2DConditionModel"),),
        block_specs=(
            BlockSpec(
                "BasicTransformerBlock",
                (Component("attn1", "self_attn"), Component("attn2", "cross_attn"), Component("ff", "ffn")),
            ),
        ),
    )
)
