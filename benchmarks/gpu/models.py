"""The five architectures of the GPU benchmark, full size (random weights) and tiny (``--smoke``).

Each is the stock diffusers pipeline the users run, built from a config with no download: prompt
embeddings go in (no text encoder), latents come out (``output_type="latent"``: the VAE is a stub
that only sets the latent scale factors). Full sizes:

* ``sd15``: the SD 1.5 U-Net at 512x512, CFG;
* ``sdxl``: the SDXL base U-Net at 1024x1024, CFG;
* ``sd3``: SD3-medium (24 joint blocks, 1536 wide) at 1024x1024, CFG;
* ``flux``: a Flux.1-dev-width transformer (3072 wide, 24 heads of 128) at 1024x1024 with 5 double
  and 10 single blocks instead of 19 and 38, with true CFG (a negative prompt, ``true_cfg_scale``);
* ``wan``: Wan 2.1 T2V 1.3B (30 blocks, 1536 wide) at 480x832 with 81 frames (32,760 tokens), CFG.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from accel.pipelines.testing import tiny_vae

from ..common import without_text_encoders


@dataclasses.dataclass
class Workload:
    """A pipeline on its device and the keyword arguments of one generation (no generator)."""

    name: str
    title: str
    pipe: Any
    call: dict[str, Any]
    kind: str  # "unet" or "dit"

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, "unet", None) or self.pipe.transformer

    @property
    def steps(self) -> int:
        return int(self.call["num_inference_steps"])


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    title: str
    kind: str
    build: Callable[[torch.device, torch.dtype, bool], Workload]
    steps: int
    smoke_steps: int = 6


def _stub_vae(latent_channels: int, video: bool = False) -> torch.nn.Module:
    """A tiny VAE with the real latent scale factors (8 spatial, 4 temporal for video)."""
    if not video:
        return tiny_vae(latent_channels, levels=4, shift_factor=0.0)
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=4,
        z_dim=latent_channels,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * latent_channels,
        latents_std=[1.0] * latent_channels,
    )


def _on(device: torch.device, dtype: torch.dtype, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a model directly on ``device`` (a 1.3B-parameter init on the CPU takes minutes), in ``dtype``."""
    torch.manual_seed(0)
    with torch.device(device):
        model = build()
    return model.to(dtype=dtype).eval()


def _randn(*shape: int, device: torch.device, dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(device, dtype)


def _finish(name: str, title: str, pipe: Any, call: dict, kind: str, device: torch.device) -> Workload:
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return Workload(name, title, pipe, {**call, "output_type": "latent"}, kind)


# ---------------------------------------------------------------------------------------- U-Nets
def build_sd15(device: torch.device, dtype: torch.dtype, smoke: bool) -> Workload:
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    text = 32 if smoke else 768
    config = dict(sample_size=64, cross_attention_dim=768)  # the SD 1.x defaults
    if smoke:
        config = dict(
            sample_size=8, block_out_channels=(32, 64, 64, 64), layers_per_block=1, cross_attention_dim=text,
            attention_head_dim=4, norm_num_groups=16,
        )  # fmt: skip
    unet = _on(device, dtype, lambda: UNet2DConditionModel(**config))
    pipe = without_text_encoders(
        StableDiffusionPipeline, vae=_stub_vae(4), unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    side = 64 if smoke else 512
    call = dict(
        prompt_embeds=_randn(1, 77, text, device=device, dtype=dtype),
        negative_prompt_embeds=_randn(1, 77, text, device=device, dtype=dtype, seed=2),
        height=side, width=side, guidance_scale=7.5, num_inference_steps=SPECS["sd15"].steps,
    )  # fmt: skip
    return _finish("sd15", f"SD 1.5 U-Net, {side}x{side}", pipe, call, "unet", device)


def build_sdxl(device: torch.device, dtype: torch.dtype, smoke: bool) -> Workload:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    text, pooled = (32, 32) if smoke else (2048, 1280)
    config = dict(
        sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )  # fmt: skip
    if smoke:
        config.update(
            sample_size=8, block_out_channels=(32, 64, 64), layers_per_block=1, transformer_layers_per_block=(1, 1, 2),
            attention_head_dim=(2, 4, 4), cross_attention_dim=text, addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + pooled, norm_num_groups=16,
        )  # fmt: skip
    unet = _on(device, dtype, lambda: UNet2DConditionModel(**config))
    pipe = without_text_encoders(
        StableDiffusionXLPipeline, vae=_stub_vae(4), unet=unet, scheduler=EulerDiscreteScheduler(),
        force_zeros_for_empty_prompt=False,
    )  # fmt: skip
    side = 64 if smoke else 1024
    call = dict(
        prompt_embeds=_randn(1, 77, text, device=device, dtype=dtype),
        negative_prompt_embeds=_randn(1, 77, text, device=device, dtype=dtype, seed=2),
        pooled_prompt_embeds=_randn(1, pooled, device=device, dtype=dtype, seed=3),
        negative_pooled_prompt_embeds=_randn(1, pooled, device=device, dtype=dtype, seed=4),
        height=side, width=side, guidance_scale=5.0, num_inference_steps=SPECS["sdxl"].steps,
    )  # fmt: skip
    return _finish("sdxl", f"SDXL U-Net, {side}x{side}", pipe, call, "unet", device)


# ---------------------------------------------------------------------------------------- DiTs
def build_sd3(device: torch.device, dtype: torch.dtype, smoke: bool) -> Workload:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    text, pooled = (32, 32) if smoke else (4096, 2048)
    config = dict(
        sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64, num_attention_heads=24,
        joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048, out_channels=16,
        pos_embed_max_size=192,
    )  # fmt: skip
    if smoke:
        config.update(
            sample_size=8, num_layers=3, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text,
            caption_projection_dim=32, pooled_projection_dim=pooled, pos_embed_max_size=16,
        )  # fmt: skip
    transformer = _on(device, dtype, lambda: SD3Transformer2DModel(**config))
    pipe = without_text_encoders(
        StableDiffusion3Pipeline, transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_stub_vae(16),
    )  # fmt: skip
    side = 64 if smoke else 1024
    call = dict(
        prompt_embeds=_randn(1, 154, text, device=device, dtype=dtype),
        negative_prompt_embeds=_randn(1, 154, text, device=device, dtype=dtype, seed=2),
        pooled_prompt_embeds=_randn(1, pooled, device=device, dtype=dtype, seed=3),
        negative_pooled_prompt_embeds=_randn(1, pooled, device=device, dtype=dtype, seed=4),
        height=side, width=side, guidance_scale=7.0, num_inference_steps=SPECS["sd3"].steps,
    )  # fmt: skip
    return _finish("sd3", f"SD3-medium, {side}x{side}", pipe, call, "dit", device)


def build_flux(device: torch.device, dtype: torch.dtype, smoke: bool) -> Workload:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    text, pooled = (32, 32) if smoke else (4096, 768)
    config = dict(
        patch_size=1, in_channels=64, num_layers=5, num_single_layers=10, attention_head_dim=128,
        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )  # fmt: skip
    if smoke:
        config.update(
            num_layers=2, num_single_layers=2, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=text,
            pooled_projection_dim=pooled, axes_dims_rope=(4, 6, 6),
        )  # fmt: skip
    transformer = _on(device, dtype, lambda: FluxTransformer2DModel(**config))
    pipe = without_text_encoders(
        FluxPipeline, scheduler=FlowMatchEulerDiscreteScheduler(), vae=_stub_vae(16), transformer=transformer
    )
    side = 64 if smoke else 1024
    call = dict(
        prompt_embeds=_randn(1, 512, text, device=device, dtype=dtype),
        pooled_prompt_embeds=_randn(1, pooled, device=device, dtype=dtype, seed=3),
        negative_prompt_embeds=_randn(1, 512, text, device=device, dtype=dtype, seed=2),
        negative_pooled_prompt_embeds=_randn(1, pooled, device=device, dtype=dtype, seed=4),
        true_cfg_scale=4.0, guidance_scale=3.5, height=side, width=side, num_inference_steps=SPECS["flux"].steps,
    )  # fmt: skip
    blocks = f"{config['num_layers']}+{config['num_single_layers']} blocks of 19+38"
    return _finish("flux", f"Flux.1-dev width ({blocks}), {side}x{side}, true CFG", pipe, call, "dit", device)


def build_wan(device: torch.device, dtype: torch.dtype, smoke: bool) -> Workload:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    text = 32 if smoke else 4096
    config = dict(
        patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
        text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6,
    )  # fmt: skip
    if smoke:
        config.update(
            num_attention_heads=2, attention_head_dim=16, text_dim=text, freq_dim=32, ffn_dim=64, num_layers=3
        )
    transformer = _on(device, dtype, lambda: WanTransformer3DModel(**config))
    pipe = without_text_encoders(
        WanPipeline, vae=_stub_vae(16, video=True), transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )  # fmt: skip
    height, width, frames = (64, 64, 9) if smoke else (480, 832, 81)
    call = dict(
        prompt_embeds=_randn(1, 512, text, device=device, dtype=dtype),
        negative_prompt_embeds=_randn(1, 512, text, device=device, dtype=dtype, seed=2),
        height=height, width=width, num_frames=frames, guidance_scale=5.0, num_inference_steps=SPECS["wan"].steps,
    )  # fmt: skip
    return _finish("wan", f"Wan 2.1 1.3B, {width}x{height}, {frames} frames", pipe, call, "dit", device)


SPECS: dict[str, ModelSpec] = {
    "sd15": ModelSpec("SD 1.5 U-Net", "unet", build_sd15, steps=20),
    "sdxl": ModelSpec("SDXL U-Net", "unet", build_sdxl, steps=12),
    "sd3": ModelSpec("SD3-medium", "dit", build_sd3, steps=12),
    "flux": ModelSpec("Flux.1-dev width", "dit", build_flux, steps=12),
    "wan": ModelSpec("Wan 2.1 1.3B", "dit", build_wan, steps=8),
}


def build(name: str, device: torch.device, dtype: torch.dtype, smoke: bool) -> Workload:
    workload = SPECS[name].build(device, dtype, smoke)
    if smoke:
        workload.call["num_inference_steps"] = SPECS[name].smoke_steps
    return workload
