"""Random-initialised tiny versions of every supported architecture and of their stock pipelines.

Built from configs, no download: pipelines get ``prompt_embeds`` instead of a text encoder. Every
accel test runs on these; so can yours::

    from accel.pipelines.testing import tiny_pipeline
    tiny = tiny_pipeline("pixart")
    image = tiny.pipe(**tiny.inputs(seed=0, steps=4)).images
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError

#: Diffusion families with a tiny pipeline, plus ``timm_vit`` (a tiny classifier).
FAMILIES = (
    "unet",
    "sdxl",
    "pixart",
    "dit",
    "sd3",
    "flux",
    "lumina",
    "lumina2",
    "wan",
    "cogvideox",
    "hunyuan_video",
    "ltx_video",
    "timm_vit",
)

TEXT_DIM = 16
TEXT_LEN = 8


@dataclasses.dataclass
class TinyPipeline:
    """A tiny stock pipeline and how to call it.

    ``inputs(seed, steps, batch, guidance, **overrides)`` returns the keyword arguments for
    ``pipe(**inputs)``; outputs are tensors (``output_type="pt"`` or ``"latent"``).
    """

    family: str
    pipe: Any
    make_inputs: Callable[..., dict]
    output_key: str = "images"

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, "unet", None) or self.pipe.transformer

    def inputs(
        self, seed: int = 0, steps: int = 4, batch: int = 1, guidance: float | None = 4.0, **overrides: Any
    ) -> dict:
        kwargs = self.make_inputs(seed=seed, steps=steps, batch=batch, guidance=guidance)
        kwargs.update(overrides)
        return kwargs

    def __call__(self, **kwargs: Any) -> torch.Tensor:
        """Run the pipeline and return its output tensor (images or video frames)."""
        out = self.pipe(**kwargs)
        return getattr(out, self.output_key)


def _embeds(seed: int, batch: int, length: int = TEXT_LEN, dim: int = TEXT_DIM) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(batch, length, dim, generator=g)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_vae(latent_channels: int = 4, levels: int = 2, shift_factor: float | None = None) -> torch.nn.Module:
    """A random-initialised tiny ``AutoencoderKL`` with ``levels`` resolution levels (downscale 2**(levels - 1))."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=(8,) * levels,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
        shift_factor=shift_factor,
    )


# ---------------------------------------------------------------------------------- denoisers
def tiny_denoiser(family: str, seed: int = 0) -> torch.nn.Module:
    """A random-initialised tiny denoiser (or timm ViT) of ``family``, in eval mode."""
    return _build_denoiser(family, seed).eval()


def _build_denoiser(family: str, seed: int) -> torch.nn.Module:
    import diffusers

    torch.manual_seed(seed)
    if family == "unet":
        return diffusers.UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(16, 32, 32),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=TEXT_DIM,
            attention_head_dim=2,
            norm_num_groups=8,
        )
    if family == "sdxl":
        return diffusers.UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=TEXT_DIM,
            attention_head_dim=2,
            norm_num_groups=8,
            transformer_layers_per_block=(1, 2),
            addition_embed_type="text_time",
            addition_time_embed_dim=4,
            projection_class_embeddings_input_dim=4 * 6 + TEXT_DIM,
            use_linear_projection=True,
        )
    if family == "pixart":
        return diffusers.PixArtTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,
            num_layers=3,
            cross_attention_dim=16,
            sample_size=8,
            patch_size=2,
            caption_channels=TEXT_DIM,
            norm_num_groups=8,
        )
    if family == "dit":
        return diffusers.DiTTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,
            num_layers=3,
            sample_size=8,
            patch_size=2,
            norm_num_groups=8,
        )
    if family == "sd3":
        return diffusers.SD3Transformer2DModel(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            num_layers=3,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=TEXT_DIM,
            caption_projection_dim=16,
            pooled_projection_dim=TEXT_DIM,
            out_channels=4,
            pos_embed_max_size=16,
        )
    if family == "flux":
        return diffusers.FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=TEXT_DIM,
            pooled_projection_dim=TEXT_DIM,
            axes_dims_rope=(2, 2, 4),
        )
    if family == "lumina":
        return diffusers.LuminaNextDiT2DModel(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            hidden_size=16,
            num_layers=3,
            num_attention_heads=2,
            num_kv_heads=1,
            multiple_of=16,
            cross_attention_dim=TEXT_DIM,
            learn_sigma=True,
        )
    if family == "lumina2":
        return diffusers.Lumina2Transformer2DModel(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            hidden_size=16,
            num_layers=3,
            num_refiner_layers=1,
            num_attention_heads=2,
            num_kv_heads=1,
            multiple_of=16,
            axes_dim_rope=(2, 2, 4),
            axes_lens=(64, 32, 32),
            cap_feat_dim=TEXT_DIM,
        )
    if family == "wan":
        return diffusers.WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            text_dim=TEXT_DIM,
            freq_dim=16,
            ffn_dim=32,
            num_layers=3,
            rope_max_seq_len=32,
        )
    if family == "cogvideox":
        return diffusers.CogVideoXTransformer3DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            time_embed_dim=8,
            text_embed_dim=TEXT_DIM,
            num_layers=3,
            sample_width=8,
            sample_height=8,
            sample_frames=9,
            patch_size=2,
            max_text_seq_length=TEXT_LEN,
            temporal_compression_ratio=4,
        )
    if family == "hunyuan_video":
        return diffusers.HunyuanVideoTransformer3DModel(
            in_channels=4,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=2,
            num_single_layers=2,
            num_refiner_layers=1,
            patch_size=2,
            patch_size_t=1,
            text_embed_dim=TEXT_DIM,
            pooled_projection_dim=8,
            rope_axes_dim=(2, 2, 4),
            guidance_embeds=True,
        )
    if family == "ltx_video":
        return diffusers.LTXVideoTransformer3DModel(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=2,
            attention_head_dim=8,
            cross_attention_dim=16,
            num_layers=3,
            caption_channels=TEXT_DIM,
        )
    if family == "timm_vit":
        import timm

        return timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=32,
            patch_size=8,
            embed_dim=32,
            depth=3,
            num_heads=2,
            num_classes=10,
        )
    from .testing_families import TINY_FAMILIES, tiny_family_model

    if family in TINY_FAMILIES:  # the 2026 families: a tiny model, without a tiny pipeline
        return tiny_family_model(family, seed)
    raise ConfigError(f"unknown family {family!r}; families: {', '.join([*FAMILIES, *TINY_FAMILIES])}")


# ---------------------------------------------------------------------------------- pipelines
def tiny_pipeline(family: str, seed: int = 0, scheduler: Any = None) -> TinyPipeline:
    """A tiny stock diffusers pipeline of ``family`` with random weights (no download)."""
    builder = _PIPELINES.get(family)
    if builder is None:
        raise ConfigError(f"no tiny pipeline for {family!r}; families: {', '.join(_PIPELINES)}")
    tiny = builder(seed)
    for module in tiny.pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    if scheduler is not None:
        tiny.pipe.scheduler = scheduler
    tiny.pipe.set_progress_bar_config(disable=True)
    return tiny


def _sd(seed: int) -> TinyPipeline:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=None,
        tokenizer=None,
        unet=tiny_denoiser("unet", seed),
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=16,
            width=16,
            output_type="pt",
        )

    return TinyPipeline("unet", pipe, inputs)


def _sdxl(seed: int) -> TinyPipeline:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=None,
        text_encoder_2=None,
        tokenizer=None,
        tokenizer_2=None,
        unet=tiny_denoiser("sdxl", seed),
        scheduler=EulerDiscreteScheduler(),
        force_zeros_for_empty_prompt=False,
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        pooled = torch.randn(batch, TEXT_DIM, generator=_generator(2000 + seed))
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            pooled_prompt_embeds=pooled,
            negative_pooled_prompt_embeds=pooled * 0.5,
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=16,
            width=16,
            output_type="pt",
        )

    return TinyPipeline("sdxl", pipe, inputs)


def _pixart(seed: int) -> TinyPipeline:
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline

    pipe = PixArtAlphaPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=tiny_vae(),
        transformer=tiny_denoiser("pixart", seed),
        scheduler=DPMSolverMultistepScheduler(),
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        mask = torch.ones(batch, TEXT_LEN)
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            prompt_attention_mask=mask,
            negative_prompt_attention_mask=mask,
            negative_prompt=None,
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=16,
            width=16,
            use_resolution_binning=False,
            output_type="pt",
        )

    return TinyPipeline("pixart", pipe, inputs)


def _dit(seed: int) -> TinyPipeline:
    from diffusers import DDIMScheduler, DiTPipeline

    pipe = DiTPipeline(transformer=tiny_denoiser("dit", seed), vae=tiny_vae(), scheduler=DDIMScheduler())

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        return dict(
            class_labels=[(seed + i) % 10 for i in range(batch)],
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            output_type="pt",
        )

    return TinyPipeline("dit", pipe, inputs)


def _sd3(seed: int) -> TinyPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline(
        transformer=tiny_denoiser("sd3", seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(shift_factor=0.0),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        pooled = torch.randn(batch, TEXT_DIM, generator=_generator(2000 + seed))
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            pooled_prompt_embeds=pooled,
            negative_pooled_prompt_embeds=pooled * 0.5,
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=16,
            width=16,
            output_type="pt",
        )

    return TinyPipeline("sd3", pipe, inputs)


def _flux(seed: int) -> TinyPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(shift_factor=0.0),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=tiny_denoiser("flux", seed),
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        pooled = torch.randn(batch, TEXT_DIM, generator=_generator(2000 + seed))
        kwargs = dict(
            prompt_embeds=_embeds(seed, batch),
            pooled_prompt_embeds=pooled,
            num_inference_steps=steps,
            generator=_generator(seed),
            height=16,
            width=16,
            output_type="pt",
        )
        if guidance and guidance > 1:  # "true CFG": two denoiser calls per step
            kwargs.update(
                negative_prompt_embeds=_embeds(seed + 500, batch),
                negative_pooled_prompt_embeds=pooled * 0.5,
                true_cfg_scale=guidance,
            )
        return kwargs

    return TinyPipeline("flux", pipe, inputs)


def _lumina(seed: int) -> TinyPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, LuminaPipeline

    pipe = LuminaPipeline(
        transformer=tiny_denoiser("lumina", seed),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(levels=4),
        text_encoder=None,
        tokenizer=None,
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        mask = torch.ones(batch, TEXT_LEN, dtype=torch.long)
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            prompt_attention_mask=mask,
            negative_prompt_attention_mask=mask,
            negative_prompt=None,
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=64,
            width=64,
            output_type="pt",
            clean_caption=False,
        )

    return TinyPipeline("lumina", pipe, inputs)


def _lumina2(seed: int) -> TinyPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline

    pipe = Lumina2Pipeline(
        transformer=tiny_denoiser("lumina2", seed),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(levels=4, shift_factor=0.0),
        text_encoder=None,
        tokenizer=None,
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        mask = torch.ones(batch, TEXT_LEN, dtype=torch.long)
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            prompt_attention_mask=mask,
            negative_prompt_attention_mask=mask,
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=64,
            width=64,
            output_type="pt",
        )

    return TinyPipeline("lumina2", pipe, inputs)


def _wan(seed: int) -> TinyPipeline:
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        transformer=tiny_denoiser("wan", seed),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=32,
            width=32,
            num_frames=5,
            output_type="pt",
        )

    return TinyPipeline("wan", pipe, inputs, output_key="frames")


def _cogvideox(seed: int) -> TinyPipeline:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    pipe = CogVideoXPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae,
        transformer=tiny_denoiser("cogvideox", seed),
        scheduler=CogVideoXDDIMScheduler(),
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=32,
            width=32,
            num_frames=9,
            output_type="pt",
        )

    return TinyPipeline("cogvideox", pipe, inputs, output_key="frames")


def _hunyuan_video(seed: int) -> TinyPipeline:
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    pipe = HunyuanVideoPipeline(
        text_encoder=None,
        tokenizer=None,
        transformer=tiny_denoiser("hunyuan_video", seed),
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=None,
        tokenizer_2=None,
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        pooled = torch.randn(batch, 8, generator=_generator(2000 + seed))
        mask = torch.ones(batch, TEXT_LEN, dtype=torch.long)
        kwargs = dict(
            prompt_embeds=_embeds(seed, batch),
            pooled_prompt_embeds=pooled,
            prompt_attention_mask=mask,
            num_inference_steps=steps,
            generator=_generator(seed),
            height=32,
            width=32,
            num_frames=5,
            output_type="pt",
            guidance_scale=1.0,
        )
        if guidance and guidance > 1:
            kwargs.update(
                negative_prompt_embeds=_embeds(seed + 500, batch),
                negative_pooled_prompt_embeds=pooled * 0.5,
                negative_prompt_attention_mask=mask,
                true_cfg_scale=guidance,
            )
        return kwargs

    return TinyPipeline("hunyuan_video", pipe, inputs, output_key="frames")


def _ltx_video(seed: int) -> TinyPipeline:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline

    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        transformer=tiny_denoiser("ltx_video", seed),
    )

    def inputs(seed: int, steps: int, batch: int, guidance: float | None) -> dict:
        mask = torch.ones(batch, TEXT_LEN, dtype=torch.long)
        return dict(
            prompt_embeds=_embeds(seed, batch),
            negative_prompt_embeds=_embeds(seed + 500, batch),
            prompt_attention_mask=mask,
            negative_prompt_attention_mask=mask,
            num_inference_steps=steps,
            guidance_scale=guidance or 1.0,
            generator=_generator(seed),
            height=32,
            width=32,
            num_frames=9,
            output_type="pt",
        )

    return TinyPipeline("ltx_video", pipe, inputs, output_key="frames")


_PIPELINES: dict[str, Callable[[int], TinyPipeline]] = {
    "unet": _sd,
    "sdxl": _sdxl,
    "pixart": _pixart,
    "dit": _dit,
    "sd3": _sd3,
    "flux": _flux,
    "lumina": _lumina,
    "lumina2": _lumina2,
    "wan": _wan,
    "cogvideox": _cogvideox,
    "hunyuan_video": _hunyuan_video,
    "ltx_video": _ltx_video,
}

PIPELINE_FAMILIES = tuple(_PIPELINES)


def tiny_text_pipeline(family: str = "unet", seed: int = 0) -> Any:
    """A tiny pipeline that takes prompts in words (word-level tokenizer + random text encoder), no download.

    Supported: ``unet`` (StableDiffusionPipeline), ``pixart``, ``sd3``, ``wan``. Used by tests of
    ``accel eval`` and the demo, which call pipelines with ``prompt=``.
    """
    from .builtin.text import build_tokenizer, clip_text_encoder, t5_text_encoder

    tiny = tiny_pipeline(family, seed)
    pipe = tiny.pipe
    if family == "unet":
        pipe.register_modules(tokenizer=build_tokenizer(), text_encoder=clip_text_encoder(hidden=TEXT_DIM, seed=seed))
    elif family == "pixart":
        pipe.register_modules(tokenizer=build_tokenizer(), text_encoder=t5_text_encoder(d_model=TEXT_DIM, seed=seed))
    elif family == "sd3":
        pipe.register_modules(
            tokenizer=build_tokenizer(),
            tokenizer_2=build_tokenizer(),
            text_encoder=clip_text_encoder(
                hidden=TEXT_DIM // 2, with_projection=True, projection_dim=TEXT_DIM // 2, seed=seed
            ),
            text_encoder_2=clip_text_encoder(
                hidden=TEXT_DIM // 2, with_projection=True, projection_dim=TEXT_DIM // 2, seed=seed + 1
            ),
        )
        pipe.tokenizer_max_length = pipe.tokenizer.model_max_length
    elif family == "wan":
        pipe.register_modules(
            tokenizer=build_tokenizer(), text_encoder=t5_text_encoder(d_model=TEXT_DIM, umt5=True, seed=seed)
        )
    else:
        raise ConfigError(f"no tiny text pipeline for {family!r}; use unet, pixart, sd3 or wan")
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe
