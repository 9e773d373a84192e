"""Random-initialised tiny versions of every supported architecture and of their stock pipelines.

Built from configs, no download: pipelines get ``prompt_embeds`` instead of a text encoder. Every
accel test runs on these; so can yours::

    from accel.pipelines.testing import tiny_pipeline
    tiny = tiny_pipeline("pixart")
    image = tiny.pipe(**tiny.inputs(seed=0, steps=4)).images

One table, :data:`TINY`, says for each family how to build its tiny denoiser and (for the diffusion
families) its tiny stock pipeline and how to call it; the 2026 families, which only have a tiny
denoiser, are in :mod:`accel.pipelines.testing_families`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError

TEXT_DIM = 16
TEXT_LEN = 8

_NO_TEXT = ("text_encoder", "tokenizer")
_NO_TEXT_2 = (*_NO_TEXT, "text_encoder_2", "tokenizer_2")


@dataclasses.dataclass(frozen=True)
class TinySpec:
    """One family's tiny denoiser and, unless ``pipeline`` is empty, its tiny stock pipeline and its call.

    The pipeline gets ``vae``, the denoiser (as ``denoiser_arg``) and ``scheduler``, None for each of
    ``absent`` and ``options``. Its call (:meth:`TinyPipeline.inputs`) gets random ``prompt_embeds``
    (or ``class_labels``), a pooled embedding of size ``pooled``, an all-ones attention mask of dtype
    ``mask`` (True: torch's default dtype), ``num_inference_steps``, a seeded ``generator`` and
    ``call``; with guidance, the negative embeddings and ``guidance_scale`` (or, for ``true_cfg``,
    ``true_cfg_scale`` only when guidance > 1).
    """

    model: str  #: diffusers model class, or ``timm:<model name>``
    config: dict
    pipeline: str = ""  #: diffusers pipeline class; empty: no tiny pipeline
    scheduler: str = ""
    scheduler_config: dict = dataclasses.field(default_factory=dict)
    vae: str = "AutoencoderKL"  #: an ``AutoencoderKL`` is ``tiny_vae(**vae_config)``
    vae_config: dict = dataclasses.field(default_factory=dict)
    vae_first: bool = True  #: built before the denoiser (the global RNG state afterwards depends on it)
    denoiser_arg: str = "transformer"
    absent: tuple[str, ...] = _NO_TEXT
    options: dict = dataclasses.field(default_factory=dict)
    class_labels: bool = False
    pooled: int = 0
    mask: torch.dtype | bool | None = None
    true_cfg: bool = False
    call: dict = dataclasses.field(default_factory=dict)
    output_key: str = "images"
    #: ``(encoder factory of builtin.text, kwargs)`` per text encoder, for :func:`tiny_text_pipeline`
    text_encoders: tuple[tuple[str, dict], ...] = ()
    text_max_length: bool = False  #: set ``pipe.tokenizer_max_length`` from the tokenizer


_IMAGE_16 = dict(height=16, width=16, output_type="pt")
_IMAGE_64 = dict(height=64, width=64, output_type="pt")

#: The tiny denoiser, pipeline and call of each family (``timm_vit``: a tiny classifier, no pipeline).
TINY: dict[str, TinySpec] = {
    "unet": TinySpec(
        "UNet2DConditionModel",
        dict(
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
        ),
        pipeline="StableDiffusionPipeline",
        scheduler="DDIMScheduler",
        scheduler_config=dict(steps_offset=1, clip_sample=False),
        denoiser_arg="unet",
        absent=(*_NO_TEXT, "safety_checker", "feature_extractor"),
        options=dict(requires_safety_checker=False),
        call=_IMAGE_16,
        text_encoders=(("clip_text_encoder", dict(hidden=TEXT_DIM)),),
    ),
    "sdxl": TinySpec(
        "UNet2DConditionModel",
        dict(
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
        ),
        pipeline="StableDiffusionXLPipeline",
        scheduler="EulerDiscreteScheduler",
        denoiser_arg="unet",
        absent=_NO_TEXT_2,
        options=dict(force_zeros_for_empty_prompt=False),
        pooled=TEXT_DIM,
        call=_IMAGE_16,
    ),
    "pixart": TinySpec(
        "PixArtTransformer2DModel",
        dict(
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
        ),
        pipeline="PixArtAlphaPipeline",
        scheduler="DPMSolverMultistepScheduler",
        mask=True,
        call=dict(negative_prompt=None, **_IMAGE_16, use_resolution_binning=False),
        text_encoders=(("t5_text_encoder", dict(d_model=TEXT_DIM)),),
    ),
    "dit": TinySpec(
        "DiTTransformer2DModel",
        dict(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=4,
            out_channels=8,
            num_layers=3,
            sample_size=8,
            patch_size=2,
            norm_num_groups=8,
        ),
        pipeline="DiTPipeline",
        scheduler="DDIMScheduler",
        vae_first=False,
        absent=(),
        class_labels=True,
        call=dict(output_type="pt"),
    ),
    "sd3": TinySpec(
        "SD3Transformer2DModel",
        dict(
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
        ),
        pipeline="StableDiffusion3Pipeline",
        scheduler="FlowMatchEulerDiscreteScheduler",
        scheduler_config=dict(shift=3.0),
        vae_config=dict(shift_factor=0.0),
        vae_first=False,
        absent=(*_NO_TEXT_2, "text_encoder_3", "tokenizer_3"),
        pooled=TEXT_DIM,
        call=_IMAGE_16,
        text_encoders=(
            ("clip_text_encoder", dict(hidden=TEXT_DIM // 2, with_projection=True, projection_dim=TEXT_DIM // 2)),
            ("clip_text_encoder", dict(hidden=TEXT_DIM // 2, with_projection=True, projection_dim=TEXT_DIM // 2)),
        ),
        text_max_length=True,
    ),
    "flux": TinySpec(
        "FluxTransformer2DModel",
        dict(
            patch_size=1,
            in_channels=16,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=TEXT_DIM,
            pooled_projection_dim=TEXT_DIM,
            axes_dims_rope=(2, 2, 4),
        ),
        pipeline="FluxPipeline",
        scheduler="FlowMatchEulerDiscreteScheduler",
        vae_config=dict(shift_factor=0.0),
        absent=_NO_TEXT_2,
        pooled=TEXT_DIM,
        true_cfg=True,  # two denoiser calls per step
        call=_IMAGE_16,
    ),
    "lumina": TinySpec(
        "LuminaNextDiT2DModel",
        dict(
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
        ),
        pipeline="LuminaPipeline",
        scheduler="FlowMatchEulerDiscreteScheduler",
        vae_config=dict(levels=4),
        vae_first=False,
        mask=torch.long,
        call=dict(negative_prompt=None, **_IMAGE_64, clean_caption=False),
    ),
    "lumina2": TinySpec(
        "Lumina2Transformer2DModel",
        dict(
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
        ),
        pipeline="Lumina2Pipeline",
        scheduler="FlowMatchEulerDiscreteScheduler",
        vae_config=dict(levels=4, shift_factor=0.0),
        vae_first=False,
        mask=torch.long,
        call=_IMAGE_64,
    ),
    "wan": TinySpec(
        "WanTransformer3DModel",
        dict(
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
        ),
        pipeline="WanPipeline",
        scheduler="FlowMatchEulerDiscreteScheduler",
        scheduler_config=dict(shift=3.0),
        vae="AutoencoderKLWan",
        vae_config=dict(
            base_dim=3,
            z_dim=4,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            latents_mean=[0.0] * 4,
            latents_std=[1.0] * 4,
        ),
        call=dict(height=32, width=32, num_frames=5, output_type="pt"),
        output_key="frames",
        text_encoders=(("t5_text_encoder", dict(d_model=TEXT_DIM, umt5=True)),),
    ),
    "cogvideox": TinySpec(
        "CogVideoXTransformer3DModel",
        dict(
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
        ),
        pipeline="CogVideoXPipeline",
        scheduler="CogVideoXDDIMScheduler",
        vae="AutoencoderKLCogVideoX",
        vae_config=dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=2,
            temporal_compression_ratio=4,
        ),
        call=dict(height=32, width=32, num_frames=9, output_type="pt"),
        output_key="frames",
    ),
    "hunyuan_video": TinySpec(
        "HunyuanVideoTransformer3DModel",
        dict(
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
        ),
        pipeline="HunyuanVideoPipeline",
        scheduler="FlowMatchEulerDiscreteScheduler",
        scheduler_config=dict(shift=7.0),
        vae="AutoencoderKLHunyuanVideo",
        vae_config=dict(
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
        ),
        absent=_NO_TEXT_2,
        pooled=8,
        mask=torch.long,
        true_cfg=True,
        call=dict(height=32, width=32, num_frames=5, output_type="pt", guidance_scale=1.0),
        output_key="frames",
    ),
    "ltx_video": TinySpec(
        "LTXVideoTransformer3DModel",
        dict(
            in_channels=8,
            out_channels=8,
            patch_size=1,
            patch_size_t=1,
            num_attention_heads=2,
            attention_head_dim=8,
            cross_attention_dim=16,
            num_layers=3,
            caption_channels=TEXT_DIM,
        ),
        pipeline="LTXPipeline",
        scheduler="FlowMatchEulerDiscreteScheduler",
        vae="AutoencoderKLLTXVideo",
        vae_config=dict(
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
        ),
        mask=torch.long,
        call=dict(height=32, width=32, num_frames=9, output_type="pt"),
        output_key="frames",
    ),
    "timm_vit": TinySpec(
        "timm:vit_tiny_patch16_224",
        dict(
            pretrained=False,
            img_size=32,
            patch_size=8,
            embed_dim=32,
            depth=3,
            num_heads=2,
            num_classes=10,
        ),
    ),
    "timm_swin": TinySpec(
        "timm:swin_tiny_patch4_window7_224",
        dict(
            pretrained=False,
            img_size=32,
            patch_size=4,
            embed_dim=16,
            depths=(2, 2),
            num_heads=(2, 4),
            window_size=4,
            num_classes=10,
        ),
    ),
    "timm_mixer": TinySpec(
        "timm.models.mlp_mixer:MlpMixer",
        dict(img_size=32, patch_size=8, embed_dim=32, num_blocks=2, num_classes=10),
    ),
    "timm_metaformer": TinySpec(  # PoolFormer v1's layers (timm's poolformer_s12), tiny sizes
        "timm.models.metaformer:MetaFormer",
        dict(
            depths=(1, 1, 2, 1),
            dims=(16, 24, 32, 48),
            token_mixers="Pooling",
            mlp_act="GELU",
            mlp_bias=True,
            norm_layers="GroupNorm1",
            layer_scale_init_values=1e-5,
            res_scale_init_values=None,
            downsample_norm=None,
            use_mlp_head=False,
            num_classes=10,
        ),
    ),
}

#: Diffusion families with a tiny pipeline, plus the timm classifiers (``timm_vit``, ``timm_swin``,
#: ``timm_mixer``, ``timm_metaformer``: tiny random models, no pipeline).
FAMILIES = tuple(TINY)
PIPELINE_FAMILIES = tuple(family for family, spec in TINY.items() if spec.pipeline)


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
    spec = TINY.get(family)
    if spec is not None and spec.model.startswith("timm:"):
        import timm

        return timm.create_model(spec.model.removeprefix("timm:"), **spec.config)
    if spec is not None and spec.model.startswith("timm.models."):  # "module:Class", layers named in the config
        module_name, _, class_name = spec.model.partition(":")
        module = importlib.import_module(module_name)
        names = ("token_mixers", "mlp_act", "norm_layers")
        config = {
            k: getattr(module, v, None) or getattr(torch.nn, v) if k in names else v for k, v in spec.config.items()
        }
        return getattr(module, class_name)(**config)
    if spec is not None:
        return getattr(diffusers, spec.model)(**copy.deepcopy(spec.config))
    from .testing_families import TINY_FAMILIES, tiny_family_model

    if family in TINY_FAMILIES:  # the 2026 families: a tiny model, without a tiny pipeline
        return tiny_family_model(family, seed)
    raise ConfigError(f"unknown family {family!r}; families: {', '.join([*FAMILIES, *TINY_FAMILIES])}")


# ---------------------------------------------------------------------------------- pipelines
def _pipeline_spec(family: str) -> TinySpec:
    spec = TINY.get(family)
    if spec is None or not spec.pipeline:
        raise ConfigError(f"no tiny pipeline for {family!r}; families: {', '.join(PIPELINE_FAMILIES)}")
    return spec


def tiny_pipeline(family: str, seed: int = 0, scheduler: Any = None) -> TinyPipeline:
    """A tiny stock diffusers pipeline of ``family`` with random weights (no download)."""
    tiny = _build_pipeline(family, _pipeline_spec(family), seed)
    for module in tiny.pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    if scheduler is not None:
        tiny.pipe.scheduler = scheduler
    tiny.pipe.set_progress_bar_config(disable=True)
    return tiny


def _build_vae(spec: TinySpec) -> torch.nn.Module:
    if spec.vae == "AutoencoderKL":
        return tiny_vae(**spec.vae_config)
    import diffusers

    torch.manual_seed(0)
    return getattr(diffusers, spec.vae)(**copy.deepcopy(spec.vae_config))


def _build_pipeline(family: str, spec: TinySpec, seed: int) -> TinyPipeline:
    import diffusers

    if spec.vae_first:
        vae = _build_vae(spec)
        denoiser = tiny_denoiser(family, seed)
    else:
        denoiser = tiny_denoiser(family, seed)
        vae = _build_vae(spec)
    pipe = getattr(diffusers, spec.pipeline)(
        vae=vae,
        scheduler=getattr(diffusers, spec.scheduler)(**spec.scheduler_config),
        **{spec.denoiser_arg: denoiser},
        **dict.fromkeys(spec.absent),
        **spec.options,
    )
    return TinyPipeline(family, pipe, functools.partial(_inputs, spec), output_key=spec.output_key)


def _inputs(spec: TinySpec, seed: int, steps: int, batch: int, guidance: float | None) -> dict:
    """The call of ``spec``'s pipeline (see :class:`TinySpec`)."""
    if spec.class_labels:
        kwargs: dict[str, Any] = dict(class_labels=[(seed + i) % 10 for i in range(batch)])
        negative: dict[str, Any] = {}
    else:
        kwargs = dict(prompt_embeds=_embeds(seed, batch))
        negative = dict(negative_prompt_embeds=_embeds(seed + 500, batch))
    if spec.pooled:
        pooled = torch.randn(batch, spec.pooled, generator=_generator(2000 + seed))
        kwargs["pooled_prompt_embeds"] = pooled
        negative["negative_pooled_prompt_embeds"] = pooled * 0.5
    if spec.mask is not None:
        mask = torch.ones(batch, TEXT_LEN, dtype=None if spec.mask is True else spec.mask)
        kwargs["prompt_attention_mask"] = mask
        negative["negative_prompt_attention_mask"] = mask
    kwargs["num_inference_steps"] = steps
    if not spec.true_cfg:
        kwargs.update(negative, guidance_scale=guidance or 1.0)
    elif guidance and guidance > 1:  # "true CFG": two denoiser calls per step
        kwargs.update(negative, true_cfg_scale=guidance)
    kwargs.update(generator=_generator(seed), **spec.call)
    return kwargs


def tiny_text_pipeline(family: str = "unet", seed: int = 0) -> Any:
    """A tiny pipeline that takes prompts in words (word-level tokenizer + random text encoder), no download.

    Supported: ``unet`` (StableDiffusionPipeline), ``pixart``, ``sd3``, ``wan``. Used by tests of
    ``accel eval`` and the demo, which call pipelines with ``prompt=``.
    """
    from .builtin import text

    spec = _pipeline_spec(family)
    if not spec.text_encoders:
        supported = [name for name, other in TINY.items() if other.text_encoders]
        raise ConfigError(f"no tiny text pipeline for {family!r}; use {', '.join(supported[:-1])} or {supported[-1]}")
    pipe = tiny_pipeline(family, seed).pipe
    suffixes = ["" if i == 0 else f"_{i + 1}" for i in range(len(spec.text_encoders))]
    modules = {f"tokenizer{suffix}": text.build_tokenizer() for suffix in suffixes}
    for i, (suffix, (factory, kwargs)) in enumerate(zip(suffixes, spec.text_encoders, strict=True)):
        modules[f"text_encoder{suffix}"] = getattr(text, factory)(**kwargs, seed=seed + i)
    pipe.register_modules(**modules)
    if spec.text_max_length:
        pipe.tokenizer_max_length = pipe.tokenizer.model_max_length
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe
