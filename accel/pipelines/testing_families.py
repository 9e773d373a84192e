"""Tiny random configurations of the families added in 2026 (and of two classes accel only discovers),
with the keyword inputs of one denoiser call: the test factory of ``tests/test_pipelines_models.py``.

Built from configs, no download, the way diffusers' own model tests build theirs (sizes read from
those tests and checked against the installed classes). Each family's ``inputs(batch, seed, step)``
gives the forward arguments of denoising step ``step`` of 4, timesteps in the model's own scale::

    from accel.pipelines.testing_families import tiny_family_model, TINY_FAMILIES
    model = tiny_family_model("flux2")
    out = model(**TINY_FAMILIES["flux2"].inputs(batch=2, seed=0, step=0))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed_allegro
from diffusers.models.transformers.transformer_ltx2 import LTX2AudioVideoRotaryPosEmbed


@dataclasses.dataclass(frozen=True)
class TinyFamily:
    """A tiny model of one family: its diffusers class, its config and the inputs of one call."""

    model_class: str
    config: Callable[[], dict]
    inputs: Callable[[int, int, int], dict]


def tiny_family_model(family: str, seed: int = 0) -> torch.nn.Module:
    """The random-initialised tiny model of ``family`` (a key of :data:`TINY_FAMILIES`), in eval mode."""
    import diffusers

    spec = TINY_FAMILIES[family]
    torch.manual_seed(seed)
    return getattr(diffusers, spec.model_class)(**spec.config()).eval()


def prediction(output: Any) -> torch.Tensor:
    """The prediction of a call's output: the first tensor (per-sample lists, as Z-Image returns, stacked)."""
    value = output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", output)
    if isinstance(value, (list, tuple)):
        value = torch.stack(list(value))
    return value


# allegro
_ALLEGRO_HEAD_DIM = 12
_ALLEGRO_F, _ALLEGRO_H, _ALLEGRO_W, _ALLEGRO_P = (2, 8, 8, 2)


def _allegro_config() -> dict:
    return dict(
        patch_size=_ALLEGRO_P,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=_ALLEGRO_HEAD_DIM,
        in_channels=4,
        out_channels=4,
        num_layers=3,
        cross_attention_dim=2 * _ALLEGRO_HEAD_DIM,
        sample_height=_ALLEGRO_H,
        sample_width=_ALLEGRO_W,
        sample_frames=_ALLEGRO_F,
        caption_channels=16,
    )


def _ALLEGRO_rope():
    gh, gw = (_ALLEGRO_H // _ALLEGRO_P, _ALLEGRO_W // _ALLEGRO_P)
    ft, fh, fw, gt, gh_, gw_ = get_3d_rotary_pos_embed_allegro(
        embed_dim=_ALLEGRO_HEAD_DIM,
        crops_coords=((0, 0), (gh, gw)),
        grid_size=(gh, gw),
        temporal_size=_ALLEGRO_F,
        interpolation_scale=(2.2, 2.0, 2.0),
    )
    pos = torch.cartesian_prod(gt.long(), gh_.long(), gw_.long()).reshape(-1, 3).transpose(0, 1).reshape(3, 1, -1)
    t, h, w = pos.contiguous()
    return ((ft, fh, fw), (t, h, w))


def _allegro_inputs(batch: int, seed: int, step: int) -> dict:
    """Forward kwargs for ``batch`` samples at step ``step`` of 4 (discrete timesteps 999, 749, 499, 249)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 8)
    mask[:, 6:] = 0
    return dict(
        hidden_states=torch.randn(batch, 4, _ALLEGRO_F, _ALLEGRO_H, _ALLEGRO_W, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        timestep=torch.full((batch,), 999 - 250 * step, dtype=torch.long),
        encoder_attention_mask=mask,
        image_rotary_emb=_ALLEGRO_rope(),
        return_dict=False,
    )


# auraflow
def _auraflow_config() -> dict:
    return dict(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=16,
        out_channels=4,
        pos_embed_max_size=64,
    )


def _auraflow_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 4, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        timestep=torch.full((batch,), 1.0 - step / 4),
        return_dict=False,
    )


# chroma
_CHROMA_TXT = 8
_CHROMA_TOKENS = 16


def _chroma_config() -> dict:
    return dict(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=16,
        axes_dims_rope=(2, 2, 4),
        approximator_num_channels=16,
        approximator_hidden_dim=32,
        approximator_layers=2,
    )


def _chroma_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, _CHROMA_TXT + _CHROMA_TOKENS, dtype=torch.bool)
    mask[0, _CHROMA_TXT - 2 : _CHROMA_TXT] = False
    img_ids = torch.zeros(4, 4, 3)
    img_ids[..., 1] = torch.arange(4)[:, None]
    img_ids[..., 2] = torch.arange(4)[None, :]
    return dict(
        hidden_states=torch.randn(batch, _CHROMA_TOKENS, 16, generator=g),
        encoder_hidden_states=torch.randn(batch, _CHROMA_TXT, 16, generator=g),
        timestep=torch.full((batch,), 1.0 - step / 4),
        img_ids=img_ids.reshape(_CHROMA_TOKENS, 3),
        txt_ids=torch.zeros(_CHROMA_TXT, 3),
        attention_mask=mask,
        return_dict=False,
    )


# cogview4
def _cogview4_config() -> dict:
    return dict(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=3,
        attention_head_dim=8,
        num_attention_heads=4,
        text_embed_dim=16,
        time_embed_dim=16,
        condition_dim=8,
    )


def _cogview4_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    h = w = 8
    return dict(
        hidden_states=torch.randn(batch, 4, h, w, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        timestep=torch.full((batch,), 1000.0 * (1.0 - step / 4)),
        original_size=torch.tensor([[h * 8, w * 8]] * batch, dtype=torch.float32),
        target_size=torch.tensor([[h * 8, w * 8]] * batch, dtype=torch.float32),
        crop_coords=torch.tensor([[0, 0]] * batch, dtype=torch.float32),
        return_dict=False,
    )


# cosmos
_COSMOS_T, _COSMOS_H, _COSMOS_W = (3, 8, 8)


def _cosmos_config() -> dict:
    return dict(
        in_channels=5,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=3,
        mlp_ratio=4.0,
        text_embed_dim=16,
        adaln_lora_dim=8,
        max_size=(4, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=True,
        extra_pos_embed_type="learnable",
        use_crossattn_projection=True,
        crossattn_proj_in_channels=24,
        encoder_hidden_states_channels=16,
    )


def _cosmos_inputs(batch: int, seed: int, step: int) -> dict:
    """Predict2.5-style call at step ``step`` of 4: per-frame timestep (B, 1, T, 1, 1), sigma decreasing 1 -> 0.25,
    first latent frame conditioned (timestep 1e-4, condition_mask 1)."""
    g = torch.Generator().manual_seed(seed)
    cond_indicator = torch.zeros(batch, 1, _COSMOS_T, 1, 1)
    cond_indicator[:, :, 0] = 1.0
    sigma = torch.full((batch, 1, 1, 1, 1), 1.0 - step / 4)
    return dict(
        hidden_states=torch.randn(batch, 4, _COSMOS_T, _COSMOS_H, _COSMOS_W, generator=g),
        condition_mask=cond_indicator.expand(-1, -1, -1, _COSMOS_H, _COSMOS_W).contiguous(),
        timestep=cond_indicator * 0.0001 + (1 - cond_indicator) * sigma,
        encoder_hidden_states=torch.randn(batch, 8, 24, generator=g),
        padding_mask=torch.zeros(1, 1, _COSMOS_H, _COSMOS_W),
        return_dict=False,
    )


# flux2
def _flux2_config() -> dict:
    return dict(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=16,
        timestep_guidance_channels=32,
        axes_dims_rope=(2, 2, 2, 2),
        guidance_embeds=True,
    )


def _flux2_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    h = w = 4
    txt = 8
    img_ids = torch.cartesian_prod(torch.arange(1), torch.arange(h), torch.arange(w), torch.arange(1)).float()
    txt_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(txt)).float()
    return dict(
        hidden_states=torch.randn(batch, h * w, 16, generator=g),
        encoder_hidden_states=torch.randn(batch, txt, 16, generator=g),
        timestep=torch.full((batch,), 1.0 - step / 4),
        img_ids=img_ids,
        txt_ids=txt_ids,
        guidance=torch.full((batch,), 4.0),
        return_dict=False,
    )


# flux3
def _flux3_config() -> dict:
    return dict(
        in_channels=16,
        cond_in_channels=16,
        num_layers=1,
        num_single_layers=3,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=16,
        timestep_channels=32,
        axes_dims_rope=(2, 2, 2, 2),
    )


def _flux3_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    h = w = 4
    txt = 8
    img_ids = torch.cartesian_prod(torch.arange(1), torch.arange(h), torch.arange(w), torch.arange(1)).float()
    img_ids[:, 1:3] *= 0.5
    txt_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(txt)).float()
    return dict(
        hidden_states=torch.randn(batch, h * w, 16, generator=g),
        encoder_hidden_states=torch.randn(batch, txt, 16, generator=g),
        timestep=torch.full((batch,), 1.0 - step / 4),
        img_ids=img_ids,
        txt_ids=txt_ids,
        return_dict=False,
    )


# hidream
_HIDREAM_LLAMA_LAYERS = (0, 1, 2, 3)


def _hidream_config() -> dict:
    return dict(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=[8, 4],
        text_emb_dim=8,
        num_routed_experts=4,
        num_activated_experts=2,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(8, 8),
        llama_layers=_HIDREAM_LLAMA_LAYERS,
    )


def _hidream_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 4, 8, 8, generator=g),
        timesteps=torch.full((batch,), 1000.0 * (1.0 - step / 4)),
        encoder_hidden_states_t5=torch.randn(batch, 8, 8, generator=g),
        encoder_hidden_states_llama3=torch.randn(len(_HIDREAM_LLAMA_LAYERS), batch, 8, 4, generator=g),
        pooled_embeds=torch.randn(batch, 8, generator=g),
        return_dict=False,
    )


# hunyuan_video15
def _hunyuan_video15_config() -> dict:
    return dict(
        in_channels=9,
        out_channels=4,
        num_attention_heads=4,
        attention_head_dim=16,
        num_layers=3,
        num_refiner_layers=1,
        mlp_ratio=4.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=16,
        text_embed_2_dim=8,
        image_embed_dim=12,
        rope_axes_dim=(4, 6, 6),
        target_size=16,
        task_type="t2v",
    )


def _hunyuan_video15_inputs(batch: int, seed: int, step: int) -> dict:
    """Forward kwargs for ``batch`` T2V samples at step ``step`` of 4 (timestep = sigma * 1000, decreasing)."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, 3, 8, 8, generator=g)
    mask = torch.ones(batch, 8)
    mask[:, 6:] = 0
    mask_2 = torch.ones(batch, 2)
    mask_2[:, 1:] = 0
    return dict(
        hidden_states=torch.cat([latents, torch.zeros_like(latents), torch.zeros(batch, 1, 3, 8, 8)], dim=1),
        timestep=torch.full((batch,), 1000.0 * (1.0 - step / 4)),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        encoder_attention_mask=mask,
        encoder_hidden_states_2=torch.randn(batch, 2, 8, generator=g),
        encoder_attention_mask_2=mask_2,
        image_embeds=torch.zeros(batch, 3, 12),
        return_dict=False,
    )


# kandinsky5
_KANDINSKY5_T, _KANDINSKY5_H, _KANDINSKY5_W = (2, 12, 12)


def _kandinsky5_config() -> dict:
    return dict(
        in_visual_dim=4,
        in_text_dim=16,
        in_text_dim2=8,
        time_dim=16,
        out_visual_dim=4,
        patch_size=(1, 2, 2),
        model_dim=32,
        ff_dim=64,
        num_text_blocks=1,
        num_visual_blocks=3,
        axes_dims=(4, 6, 6),
        visual_cond=True,
    )


def _kandinsky5_inputs(batch: int, seed: int, step: int) -> dict:
    """T2V call at step ``step`` of 4 (timestep = sigma * 1000, decreasing); channels-last latents with zero
    conditioning latents and mask, as the pipeline builds them."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, _KANDINSKY5_T, _KANDINSKY5_H, _KANDINSKY5_W, 4, generator=g)
    return dict(
        hidden_states=torch.cat(
            [latents, torch.zeros_like(latents), torch.zeros(batch, _KANDINSKY5_T, _KANDINSKY5_H, _KANDINSKY5_W, 1)],
            dim=-1,
        ),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        pooled_projections=torch.randn(batch, 8, generator=g),
        timestep=torch.full((batch,), 1000.0 * (1.0 - step / 4)),
        visual_rope_pos=[
            torch.arange(_KANDINSKY5_T),
            torch.arange(_KANDINSKY5_H // 2),
            torch.arange(_KANDINSKY5_W // 2),
        ],
        text_rope_pos=torch.arange(8),
        scale_factor=(1, 2, 2),
        sparse_params=None,
        return_dict=False,
    )


# ltx2_video
_LTX2_VIDEO_F, _LTX2_VIDEO_H, _LTX2_VIDEO_W, _LTX2_VIDEO_AF = (2, 8, 8, 9)
_LTX2_VIDEO_VROPE = LTX2AudioVideoRotaryPosEmbed(
    dim=32, modality="video", double_precision=False, num_attention_heads=2
)
_LTX2_VIDEO_AROPE = LTX2AudioVideoRotaryPosEmbed(
    dim=16, scale_factors=[4], modality="audio", double_precision=False, num_attention_heads=2
)


def _ltx2_video_config() -> dict:
    return dict(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=8,
        audio_cross_attention_dim=16,
        num_layers=3,
        qk_norm="rms_norm_across_heads",
        caption_channels=16,
        rope_double_precision=False,
    )


def _ltx2_video_inputs(batch: int, seed: int, step: int) -> dict:
    """Forward kwargs for ``batch`` samples at step ``step`` of 4 (timestep = sigma * 1000, decreasing)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 8)
    mask[:, :2] = 0
    t = torch.full((batch,), 1000.0 * (1.0 - step / 4))
    return dict(
        hidden_states=torch.randn(batch, _LTX2_VIDEO_F * _LTX2_VIDEO_H * _LTX2_VIDEO_W, 4, generator=g),
        audio_hidden_states=torch.randn(batch, _LTX2_VIDEO_AF, 4, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        audio_encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        timestep=t,
        sigma=t,
        encoder_attention_mask=mask,
        audio_encoder_attention_mask=mask,
        num_frames=_LTX2_VIDEO_F,
        height=_LTX2_VIDEO_H,
        width=_LTX2_VIDEO_W,
        fps=24.0,
        audio_num_frames=_LTX2_VIDEO_AF,
        video_coords=_LTX2_VIDEO_VROPE.prepare_video_coords(
            batch, _LTX2_VIDEO_F, _LTX2_VIDEO_H, _LTX2_VIDEO_W, torch.device("cpu"), fps=24.0
        ),
        audio_coords=_LTX2_VIDEO_AROPE.prepare_audio_coords(batch, _LTX2_VIDEO_AF, torch.device("cpu")),
        use_cross_timestep=True,
        return_dict=False,
    )


# mochi
def _mochi_config() -> dict:
    return dict(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=3,
        pooled_projection_dim=16,
        in_channels=4,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=16,
        time_embed_dim=16,
        activation_fn="swiglu",
        max_sequence_length=16,
    )


def _mochi_inputs(batch: int, seed: int, step: int) -> dict:
    """Forward kwargs for ``batch`` samples at step ``step`` of 4. Mochi's model timestep runs 0 (noise) -> 1000."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 8, dtype=torch.bool)
    mask[:, 6:] = False
    return dict(
        hidden_states=torch.randn(batch, 4, 2, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        timestep=torch.full((batch,), 1000.0 * step / 4),
        encoder_attention_mask=mask,
        return_dict=False,
    )


# qwenimage
def _qwenimage_config() -> dict:
    return dict(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=3,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )


def _qwenimage_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    h = w = 4
    txt = 8
    mask = torch.ones(batch, txt, dtype=torch.long)
    mask[0, -2:] = 0
    return dict(
        hidden_states=torch.randn(batch, h * w, 16, generator=g),
        encoder_hidden_states=torch.randn(batch, txt, 16, generator=g),
        encoder_hidden_states_mask=mask,
        timestep=torch.full((batch,), 1.0 - step / 4),
        img_shapes=[[(1, h, w)]] * batch,
        return_dict=False,
    )


# qwenimage21
_QWENIMAGE21_TXT = 8
_QWENIMAGE21_H = _QWENIMAGE21_W = 4


def _qwenimage21_config() -> dict:
    return dict(
        patch_size=1,
        in_channels=16,
        out_channels=16,
        num_layers=3,
        attention_head_dim=16,
        num_attention_heads=2,
        context_in_dim=16,
        mlp_ratio=3,
        axes_dims_rope=(8, 4, 4),
        causal_condition=True,
    )


def _qwenimage21_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    target = _QWENIMAGE21_H * _QWENIMAGE21_W
    img_mask = torch.zeros(batch, _QWENIMAGE21_TXT + target // 4, dtype=torch.bool)
    img_mask[:, _QWENIMAGE21_TXT:] = True
    txt_mask = torch.ones(batch, _QWENIMAGE21_TXT, dtype=torch.long)
    txt_mask[0, -2:] = 0
    return dict(
        hidden_states=torch.randn(batch, target, 16, generator=g),
        encoder_hidden_states=torch.randn(batch, _QWENIMAGE21_TXT, 16, generator=g),
        encoder_hidden_states_mask=txt_mask,
        timestep=torch.full((batch,), 1.0 - step / 4),
        img_shapes=[[(1, _QWENIMAGE21_H, _QWENIMAGE21_W)]] * batch,
        img_mask=img_mask,
        return_dict=False,
    )


# sana
def _sana_config() -> dict:
    return dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=4,
        attention_head_dim=8,
        num_layers=3,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=16,
        mlp_ratio=2.5,
        sample_size=8,
        patch_size=1,
    )


def _sana_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 8, dtype=torch.long)
    mask[0, -3:] = 0
    return dict(
        hidden_states=torch.randn(batch, 4, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        encoder_attention_mask=mask,
        timestep=torch.full((batch,), 1000.0 * (1.0 - step / 4)),
        return_dict=False,
    )


# sana_video
def _sana_video_config() -> dict:
    return dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=3,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=16,
        mlp_ratio=2.5,
        dropout=0.0,
        attention_bias=False,
        sample_size=8,
        patch_size=(1, 2, 2),
        norm_elementwise_affine=False,
        norm_eps=1e-06,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def _sana_video_inputs(batch: int, seed: int, step: int) -> dict:
    """Forward kwargs for ``batch`` samples at step ``step`` of 4 (timestep = sigma * 1000, decreasing)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 8)
    mask[:, 6:] = 0
    return dict(
        hidden_states=torch.randn(batch, 4, 2, 12, 12, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        encoder_attention_mask=mask,
        timestep=torch.full((batch,), 1000.0 * (1.0 - step / 4)),
        return_dict=False,
    )


# skyreels_v2
def _skyreels_v2_config() -> dict:
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=32,
        ffn_dim=64,
        num_layers=3,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def _skyreels_v2_inputs(batch: int, seed: int, step: int) -> dict:
    """Forward kwargs for ``batch`` samples at denoising step ``step`` of 4 (timestep in [0, 1000], decreasing)."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 4, 2, 8, 8, generator=g),
        timestep=torch.full((batch,), 1000.0 * (1.0 - step / 4)),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        return_dict=False,
    )


# wan_vace
def _wan_vace_config() -> dict:
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=32,
        ffn_dim=64,
        num_layers=3,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        vace_layers=[0, 2],
        vace_in_channels=12,
    )


def _wan_vace_inputs(batch: int, seed: int, step: int) -> dict:
    """Forward kwargs for ``batch`` samples at denoising step ``step`` of 4 (timestep in [0, 1000], decreasing)."""
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 4, 2, 8, 8, generator=g),
        timestep=torch.full((batch,), 1000.0 * (1.0 - step / 4)),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
        control_hidden_states=torch.randn(batch, 12, 2, 8, 8, generator=g),
        control_hidden_states_scale=torch.tensor([1.0, 0.5]),
        return_dict=False,
    )


# zimage
_ZIMAGE_C, _ZIMAGE_H, _ZIMAGE_W, _ZIMAGE_TXT = (16, 8, 8, 8)


def _zimage_config() -> dict:
    return dict(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=_ZIMAGE_C,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )


def _zimage_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=[torch.randn(_ZIMAGE_C, 1, _ZIMAGE_H, _ZIMAGE_W, generator=g) for _ in range(batch)],
        t=torch.full((batch,), step / 4),
        cap_feats=[torch.randn(_ZIMAGE_TXT, 16, generator=g) for _ in range(batch)],
        return_dict=False,
    )


# the two discovered classes (no hand-written adapter)
def _cogview3plus_config() -> dict:
    return dict(
        patch_size=2,
        in_channels=4,
        num_layers=3,
        attention_head_dim=4,
        num_attention_heads=2,
        out_channels=4,
        text_embed_dim=8,
        time_embed_dim=8,
        condition_dim=2,
        pos_embed_max_size=8,
        sample_size=8,
    )


def _cogview3plus_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([[64, 64]] * batch)
    return dict(
        hidden_states=torch.randn(batch, 4, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 8, generator=g),
        original_size=size,
        target_size=size,
        crop_coords=torch.zeros(batch, 2, dtype=torch.long),
        timestep=torch.full((batch,), 999 - 250 * step, dtype=torch.long),
        return_dict=False,
    )


def _latte_config() -> dict:
    return dict(
        video_length=2,
        sample_size=8,
        num_layers=3,
        patch_size=2,
        attention_head_dim=4,
        num_attention_heads=2,
        caption_channels=8,
        in_channels=4,
        cross_attention_dim=8,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )


def _latte_inputs(batch: int, seed: int, step: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 4, 2, 8, 8, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 8, generator=g),
        timestep=torch.full((batch,), 999 - 250 * step, dtype=torch.long),
        enable_temporal_attentions=True,
        return_dict=False,
    )


TINY_FAMILIES = {
    # two classes with no adapter: accel discovers their blocks
    "auto:CogView3PlusTransformer2DModel": TinyFamily(
        "CogView3PlusTransformer2DModel", _cogview3plus_config, _cogview3plus_inputs
    ),
    "auto:LatteTransformer3DModel": TinyFamily("LatteTransformer3DModel", _latte_config, _latte_inputs),
    "allegro": TinyFamily("AllegroTransformer3DModel", _allegro_config, _allegro_inputs),
    "auraflow": TinyFamily("AuraFlowTransformer2DModel", _auraflow_config, _auraflow_inputs),
    "chroma": TinyFamily("ChromaTransformer2DModel", _chroma_config, _chroma_inputs),
    "cogview4": TinyFamily("CogView4Transformer2DModel", _cogview4_config, _cogview4_inputs),
    "cosmos": TinyFamily("CosmosTransformer3DModel", _cosmos_config, _cosmos_inputs),
    "flux2": TinyFamily("Flux2Transformer2DModel", _flux2_config, _flux2_inputs),
    "flux3": TinyFamily("Flux3Transformer2DModel", _flux3_config, _flux3_inputs),
    "hidream": TinyFamily("HiDreamImageTransformer2DModel", _hidream_config, _hidream_inputs),
    "hunyuan_video15": TinyFamily(
        "HunyuanVideo15Transformer3DModel", _hunyuan_video15_config, _hunyuan_video15_inputs
    ),
    "kandinsky5": TinyFamily("Kandinsky5Transformer3DModel", _kandinsky5_config, _kandinsky5_inputs),
    "ltx2_video": TinyFamily("LTX2VideoTransformer3DModel", _ltx2_video_config, _ltx2_video_inputs),
    "mochi": TinyFamily("MochiTransformer3DModel", _mochi_config, _mochi_inputs),
    "qwenimage": TinyFamily("QwenImageTransformer2DModel", _qwenimage_config, _qwenimage_inputs),
    "qwenimage21": TinyFamily("QwenImage21Transformer2DModel", _qwenimage21_config, _qwenimage21_inputs),
    "sana": TinyFamily("SanaTransformer2DModel", _sana_config, _sana_inputs),
    "sana_video": TinyFamily("SanaVideoTransformer3DModel", _sana_video_config, _sana_video_inputs),
    "skyreels_v2": TinyFamily("SkyReelsV2Transformer3DModel", _skyreels_v2_config, _skyreels_v2_inputs),
    "wan_vace": TinyFamily("WanVACETransformer3DModel", _wan_vace_config, _wan_vace_inputs),
    "zimage": TinyFamily("ZImageTransformer2DModel", _zimage_config, _zimage_inputs),
}
