"""Adapters for image diffusion transformers: PixArt, DiT, SD3, Flux, Lumina-Next, Lumina2."""

from __future__ import annotations

import dataclasses

import torch

from ..registry import Adapter, BlockSpec, Component, register_adapter

D = "diffusers"

_BASIC_BLOCK = BlockSpec(
    "BasicTransformerBlock",
    (Component("attn1", "self_attn"), Component("attn2", "cross_attn"), Component("ff", "ffn")),
)

_JOINT_BLOCK = BlockSpec(
    "JointTransformerBlock",
    (
        Component("attn", "joint_attn"),
        Component("attn2", "self_attn"),
        Component("ff", "ffn"),
        Component("ff_context", "context_ffn"),
    ),
)

register_adapter(
    Adapter(
        family="pixart",
        title="PixArt-alpha/sigma",
        kind="image_dit",
        model_classes=((D, "PixArtTransformer2DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(_BASIC_BLOCK,),
    )
)


@dataclasses.dataclass(frozen=True)
class DiTAdapter(Adapter):
    """``DiTPipeline`` stacks ``[cond, uncond]`` (null class last) and steps the doubled latents."""

    def detect_cfg_stacked(self, kwargs: dict, batch: int, latent_batch: int | None) -> bool | None:
        labels = kwargs.get("class_labels")
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or batch % 2:
            return False
        null_class = 1000  # DiTPipeline hard-codes the null class id
        half = batch // 2
        return bool((labels[half:] == null_class).all()) and not bool((labels[:half] == null_class).all())


register_adapter(
    DiTAdapter(
        family="dit",
        title="DiT (class-conditional)",
        kind="image_dit",
        model_classes=((D, "DiTTransformer2DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(_BASIC_BLOCK,),
        cfg_order="cond_first",
    )
)

register_adapter(
    Adapter(
        family="sd3",
        title="Stable Diffusion 3 / 3.5",
        kind="image_dit",
        model_classes=((D, "SD3Transformer2DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(_JOINT_BLOCK,),
    )
)

register_adapter(
    Adapter(
        family="flux",
        title="FLUX.1",
        kind="image_dit",
        model_classes=((D, "FluxTransformer2DModel"),),
        block_lists=("transformer_blocks", "single_transformer_blocks"),
        block_specs=(
            BlockSpec(
                "FluxTransformerBlock",
                (Component("attn", "joint_attn"), Component("ff", "ffn"), Component("ff_context", "context_ffn")),
            ),
            BlockSpec(
                "FluxSingleTransformerBlock",
                (Component("attn", "joint_attn"), Component("proj_mlp", "mlp_in"), Component("proj_out", "mlp_out")),
            ),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"img_ids", "txt_ids"}),
    )
)

register_adapter(
    Adapter(
        family="lumina",
        title="Lumina-Next",
        kind="image_dit",
        model_classes=((D, "LuminaNextDiT2DModel"),),
        block_lists=("layers",),
        block_specs=(
            BlockSpec(
                "LuminaNextDiTBlock",
                (Component("attn1", "self_attn"), Component("attn2", "cross_attn"), Component("feed_forward", "ffn")),
            ),
        ),
        cfg_order="cond_first",  # LuminaPipeline stacks [prompt, negative]
        unbatched_inputs=frozenset({"image_rotary_emb"}),
    )
)

register_adapter(
    Adapter(
        family="lumina2",
        title="Lumina-Image 2.0",
        kind="image_dit",
        model_classes=((D, "Lumina2Transformer2DModel"),),
        block_lists=("layers",),
        block_specs=(
            BlockSpec("Lumina2TransformerBlock", (Component("attn", "joint_attn"), Component("feed_forward", "ffn"))),
        ),
        cfg_layout="separate",  # Lumina2Pipeline calls the transformer for the prompt, then for the negative
    )
)
