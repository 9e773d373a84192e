"""Adapters for video diffusion transformers: Wan 2.x, CogVideoX, HunyuanVideo, LTX-Video."""

from __future__ import annotations

from ..registry import Adapter, BlockSpec, Component, register_adapter

D = "diffusers"

register_adapter(
    Adapter(
        family="wan",
        title="Wan 2.x",
        kind="video_dit",
        model_classes=((D, "WanTransformer3DModel"),),
        block_lists=("blocks",),
        block_specs=(
            BlockSpec(
                "WanTransformerBlock",
                (Component("attn1", "self_attn"), Component("attn2", "cross_attn"), Component("ffn", "ffn")),
            ),
        ),
        cfg_layout="separate",
    )
)

register_adapter(
    Adapter(
        family="cogvideox",
        title="CogVideoX",
        kind="video_dit",
        model_classes=((D, "CogVideoXTransformer3DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(BlockSpec("CogVideoXBlock", (Component("attn1", "joint_attn"), Component("ff", "ffn"))),),
        unbatched_inputs=frozenset({"image_rotary_emb"}),
    )
)

register_adapter(
    Adapter(
        family="hunyuan_video",
        title="HunyuanVideo",
        kind="video_dit",
        model_classes=((D, "HunyuanVideoTransformer3DModel"),),
        block_lists=("transformer_blocks", "single_transformer_blocks"),
        block_specs=(
            BlockSpec(
                "HunyuanVideoTransformerBlock",
                (Component("attn", "joint_attn"), Component("ff", "ffn"), Component("ff_context", "context_ffn")),
            ),
            BlockSpec(
                "HunyuanVideoSingleTransformerBlock",
                (Component("attn", "joint_attn"), Component("proj_mlp", "mlp_in"), Component("proj_out", "mlp_out")),
            ),
        ),
        cfg_layout="separate",
    )
)

register_adapter(
    Adapter(
        family="ltx_video",
        title="LTX-Video",
        kind="video_dit",
        model_classes=((D, "LTXVideoTransformer3DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "LTXVideoTransformerBlock",
                (Component("attn1", "self_attn"), Component("attn2", "cross_attn"), Component("ff", "ffn")),
            ),
        ),
        unbatched_inputs=frozenset({"video_coords", "rope_interpolation_scale"}),
    )
)
