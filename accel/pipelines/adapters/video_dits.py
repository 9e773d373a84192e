"""Adapters for video diffusion transformers: Wan 2.x, CogVideoX, HunyuanVideo, LTX-Video, and the 2026
families (HunyuanVideo 1.5, LTX-2, Sana-Video, Cosmos, Kandinsky 5, SkyReels-V2, Wan VACE, Mochi,
Allegro). The component lists of the newer families were read off the installed diffusers classes and
checked on tiny models (``accel/pipelines/testing_families.py``)."""

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

# ---------------------------------------------------------------------------------------- 2026 families

register_adapter(
    Adapter(
        family="allegro",
        title="Allegro",
        kind="video_dit",
        model_classes=((D, "AllegroTransformer3DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "AllegroTransformerBlock",
                (
                    Component("attn1", "self_attn"),
                    Component("attn2", "cross_attn"),
                    Component("ff", "ffn"),
                ),
            ),
        ),
        unbatched_inputs=frozenset({"image_rotary_emb"}),
    )
)

register_adapter(
    Adapter(
        family="cosmos",
        title="Cosmos (Predict / Transfer)",
        kind="video_dit",
        model_classes=((D, "CosmosTransformer3DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "CosmosTransformerBlock",
                (
                    Component("attn1", "self_attn"),
                    Component("attn2", "cross_attn"),
                    Component("ff", "ffn"),
                ),
            ),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"padding_mask"}),
    )
)

register_adapter(
    Adapter(
        family="hunyuan_video15",
        title="HunyuanVideo 1.5",
        kind="video_dit",
        model_classes=((D, "HunyuanVideo15Transformer3DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "HunyuanVideo15TransformerBlock",
                (
                    Component("attn", "joint_attn"),
                    Component("ff", "ffn"),
                    Component("ff_context", "context_ffn"),
                ),
            ),
        ),
        cfg_layout="separate",
    )
)

register_adapter(
    Adapter(
        family="kandinsky5",
        title="Kandinsky 5.0 Video",
        kind="video_dit",
        model_classes=((D, "Kandinsky5Transformer3DModel"),),
        block_lists=("visual_transformer_blocks",),
        block_specs=(
            BlockSpec(
                "Kandinsky5TransformerDecoderBlock",
                (
                    Component("self_attention", "self_attn"),
                    Component("cross_attention", "cross_attn"),
                    Component("feed_forward", "ffn"),
                ),
            ),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"text_rope_pos", "scale_factor", "visual_rope_pos", "sparse_params"}),
    )
)

register_adapter(
    Adapter(
        family="ltx2_video",
        title="LTX-2 (audio-video)",
        kind="video_dit",
        model_classes=((D, "LTX2VideoTransformer3DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "LTX2VideoTransformerBlock",
                (
                    Component("attn1", "self_attn"),
                    Component("audio_attn1", "self_attn"),
                    Component("attn2", "cross_attn"),
                    Component("audio_attn2", "cross_attn"),
                    Component("audio_to_video_attn", "cross_attn"),
                    Component("video_to_audio_attn", "cross_attn"),
                    Component("ff", "ffn"),
                    Component("audio_ff", "ffn"),
                ),
            ),
        ),
    )
)

register_adapter(
    Adapter(
        family="mochi",
        title="Mochi 1",
        kind="video_dit",
        model_classes=((D, "MochiTransformer3DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "MochiTransformerBlock",
                (
                    Component("attn1", "joint_attn"),
                    Component("ff", "ffn"),
                ),
            ),
        ),
    )
)

register_adapter(
    Adapter(
        family="sana_video",
        title="SANA-Video",
        kind="video_dit",
        model_classes=((D, "SanaVideoTransformer3DModel"),),
        block_lists=("transformer_blocks",),
        block_specs=(
            BlockSpec(
                "SanaVideoTransformerBlock",
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
        family="skyreels_v2",
        title="SkyReels-V2",
        kind="video_dit",
        model_classes=((D, "SkyReelsV2Transformer3DModel"),),
        block_lists=("blocks",),
        block_specs=(
            BlockSpec(
                "SkyReelsV2TransformerBlock",
                (
                    Component("attn1", "self_attn"),
                    Component("attn2", "cross_attn"),
                    Component("ffn", "ffn"),
                ),
            ),
        ),
        cfg_layout="separate",
    )
)

register_adapter(
    Adapter(
        family="wan_vace",
        title="Wan VACE",
        kind="video_dit",
        model_classes=((D, "WanVACETransformer3DModel"),),
        block_lists=("vace_blocks", "blocks"),
        block_specs=(
            BlockSpec(
                "WanVACETransformerBlock",
                (
                    Component("attn1", "self_attn"),
                    Component("attn2", "cross_attn"),
                    Component("ffn", "ffn"),
                ),
            ),
            BlockSpec(
                "WanTransformerBlock",
                (
                    Component("attn1", "self_attn"),
                    Component("attn2", "cross_attn"),
                    Component("ffn", "ffn"),
                ),
            ),
        ),
        cfg_layout="separate",
        unbatched_inputs=frozenset({"control_hidden_states_scale"}),
    )
)
