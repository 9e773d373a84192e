"""Adapters for image diffusion transformers: PixArt, DiT, SD3, Flux, Lumina-Next, Lumina2, and the 2026
families (FLUX.2, FLUX.3, Qwen-Image, Qwen-Image 2.1, Chroma, HiDream-I1, Z-Image, CogView4, AuraFlow,
Sana). The component lists of the newer families were read off the installed diffusers classes and
checked on tiny models (``accel/pipelines/testing_families.py``)."""

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

# ---------------------------------------------------------------------------------------- 2026 families

register_adapter(
    Adapter(
        family="auraflow",
        title="AuraFlow",
        kind="image_dit",
        model_classes=((D, "AuraFlowTransformer2DModel"),),
        block_lists=("joint_transformer_blocks", "single_transformer_blocks"),
        block_specs=(
            BlockSpec(
                "AuraFlowJointTransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("ff", "ffn"),
                    Component("ff_context", "context_ffn"),
                ),
            ),
            BlockSpec(
                "AuraFlowSingleTransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("ff", "ffn"),
                ),
            ),
        ),
    )
)

register_adapter(
    Adapter(
        family="chroma",
        title="Chroma",
        kind="image_dit",
        model_classes=((D, "ChromaTransformer2DModel"),),
        block_lists=("transformer_blocks", "single_transformer_blocks"),
        block_specs=(
            BlockSpec(
                "ChromaTransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("ff", "ffn"),
                    Component("ff_context", "context_ffn"),
                ),
            ),
            BlockSpec(
                "ChromaSingleTransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("proj_mlp", "mlp_in"),
                    Component("proj_out", "mlp_out"),
                ),
            ),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"img_ids", "txt_ids"}),
    )
)

register_adapter(
    Adapter(
        family="cogview4",
        title="CogView4",
        kind="image_dit",
        model_classes=((D, "CogView4Transformer2DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(BlockSpec("CogView4TransformerBlock", (Component("attn1", "joint_attn"),)),),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"image_rotary_emb"}),
    )
)

register_adapter(
    Adapter(
        family="flux2",
        title="FLUX.2",
        kind="image_dit",
        model_classes=((D, "Flux2Transformer2DModel"),),
        block_lists=("transformer_blocks", "single_transformer_blocks"),
        block_specs=(
            BlockSpec(
                "Flux2TransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("ff", "ffn"),
                    Component("ff_context", "context_ffn"),
                ),
            ),
            BlockSpec("Flux2SingleTransformerBlock", (Component("attn", "joint_attn"),)),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"img_ids", "txt_ids"}),
    )
)

register_adapter(
    Adapter(
        family="flux3",
        title="FLUX.3",
        kind="image_dit",
        model_classes=((D, "Flux3Transformer2DModel"),),
        block_lists=("txt_mode_blocks", "single_transformer_blocks"),
        block_specs=(
            BlockSpec(
                "Flux3ModeTransformerBlock",
                (
                    Component("attn", "self_attn"),
                    Component("ff", "ffn"),
                ),
            ),
            BlockSpec(
                "Flux3SingleTransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("ff", "ffn"),
                ),
            ),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"img_ids", "image_cond_ids", "txt_ids"}),
    )
)

register_adapter(
    Adapter(
        family="hidream",
        title="HiDream-I1",
        kind="image_dit",
        model_classes=((D, "HiDreamImageTransformer2DModel"),),
        block_lists=("double_stream_blocks", "single_stream_blocks"),
        block_specs=(
            BlockSpec(
                "HiDreamBlock",
                (
                    Component("block.attn1", "joint_attn"),
                    Component("block.ff_i", "ffn"),
                ),
            ),
        ),
        batch_dims=(("encoder_hidden_states_llama3", 1),),
    )
)

register_adapter(
    Adapter(
        family="qwenimage",
        title="Qwen-Image",
        kind="image_dit",
        model_classes=((D, "QwenImageTransformer2DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "QwenImageTransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("img_mlp", "ffn"),
                    Component("txt_mlp", "context_ffn"),
                ),
            ),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"img_shapes"}),
    )
)

register_adapter(
    Adapter(
        family="qwenimage21",
        title="Qwen-Image 2.1",
        kind="image_dit",
        model_classes=((D, "QwenImage21Transformer2DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "QwenImage21TransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("img_mlp", "ffn"),
                ),
            ),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"img_shapes"}),
    )
)

register_adapter(
    Adapter(
        family="sana",
        title="Sana",
        kind="image_dit",
        model_classes=((D, "SanaTransformer2DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "SanaTransformerBlock",
                (
                    Component("attn1", "self_attn"),
                    Component("attn2", "cross_attn"),
                    Component("ff", "ffn"),
                ),
            ),
        ),
    )
)

register_adapter(
    Adapter(
        family="zimage",
        title="Z-Image",
        kind="image_dit",
        model_classes=((D, "ZImageTransformer2DModel"),),
        block_lists=("noise_refiner", "context_refiner", "layers"),
        block_specs=(
            BlockSpec(
                "ZImageTransformerBlock",
                (
                    Component("attention", "joint_attn"),
                    Component("feed_forward", "ffn"),
                ),
            ),
        ),
        cfg_order="cond_first",
        unsupported=(
            (
                "AdaptiveGuidanceConfig",
                "its transformer takes and returns lists of per-sample tensors, which adaptive guidance cannot cut "
                "into CFG halves",
            ),
        ),
    )
)
