"""Train the built-in diffusion models (each within ~25-60 minutes on 2 CPU cores).

    python -m accel.pipelines.builtin.train_diffusion sd-digits [--max-steps N]

One :class:`Recipe` per model says how to build its denoiser and text encoder(s), how the stock
pipeline conditions the denoiser (so training sees exactly what inference will), which objective
it trains, and how to assemble the stock pipeline that is saved (fp16 safetensors) under
``accel/pipelines/builtin/weights/<name>``. The text encoder trains jointly with the denoiser;
10% of captions are dropped to the empty prompt, which is the pipelines' default negative prompt.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import random
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from . import BUILTIN_MODELS, VAE_DIR, VARIED_VAE_DIR, data
from .objectives import EPS_SCHEDULE, EpsilonObjective, FlowObjective, drop_captions, encode_images, tokenize
from .text import MAX_LENGTH, build_tokenizer, clip_text_encoder, t5_text_encoder
from .train_autoencoders import WAN_VAE_DIR
from .training import fit, half_precision_copy, write_report


@dataclasses.dataclass
class Recipe:
    name: str
    objective: str  # "v" (DDPM v-prediction) or "flow"
    build: Callable[[], dict[str, Any]]  # trainable parts + tokenizer
    condition: Callable[[dict[str, Any], list[str]], dict[str, Any]]  # captions -> denoiser kwargs
    predict: Callable[[dict[str, Any], torch.Tensor, torch.Tensor, dict[str, Any]], torch.Tensor]
    assemble: Callable[[dict[str, Any], Any], Any]  # trained parts + vae -> pipeline
    data: Callable[
        [Any], Callable[[torch.Generator, int], tuple[torch.Tensor, list[str]]]
    ]  # vae -> latent batch sampler
    load_vae: Callable[[], Any]
    max_steps: int = 1600
    batch_size: int = 64
    lr: float = 1e-3


# ------------------------------------------------------------------------------------ data
def _digit_batches(vae) -> Callable[[torch.Generator, int], tuple[torch.Tensor, list[str]]]:
    images, labels = data.digits("train")

    def sample(g: torch.Generator, n: int) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(len(images), (n,), generator=g)
        pixels = data.augment_digits(images[idx], g)  # fresh augmentation each step, so encoded per step
        return encode_images(vae, pixels), [data.digit_caption(int(label)) for label in labels[idx]]

    return sample


def _shape_batches(vae) -> Callable[[torch.Generator, int], tuple[torch.Tensor, list[str]]]:
    images, _, captions = data.shapes(24000, seed=1)

    def sample(g: torch.Generator, n: int) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(len(images), (n,), generator=g)
        return encode_images(vae, images[idx]), [captions[i] for i in idx.tolist()]

    return sample


def _varied_shape_batches(vae) -> Callable[[torch.Generator, int], tuple[torch.Tensor, list[str]]]:
    """Latents of 30000 varied shapes, encoded once up front (no augmentation, so nothing changes per step)."""
    from tqdm.auto import tqdm

    images, _, captions = data.varied_shapes(30000, seed=1)
    latents = torch.cat(
        [
            encode_images(vae, images[i : i + 500])
            for i in tqdm(range(0, len(images), 500), desc="encode images", unit="batch")
        ]
    )

    def sample(g: torch.Generator, n: int) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(len(latents), (n,), generator=g)
        return latents[idx], [captions[i] for i in idx.tolist()]

    return sample


def _video_batches(vae) -> Callable[[torch.Generator, int], tuple[torch.Tensor, list[str]]]:
    """Latents of a fixed set of 4800 videos, encoded once up front (a quarter of a step's cost saved)."""
    from tqdm.auto import tqdm

    videos, _, captions = data.moving_shapes(4800, seed=1)
    latents = torch.cat(
        [
            _encode_videos(vae, videos[i : i + 16].permute(0, 2, 1, 3, 4))  # (n, 3, F, H, W)
            for i in tqdm(range(0, len(videos), 16), desc="encode videos", unit="batch")
        ]
    )

    def sample(g: torch.Generator, n: int) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(len(latents), (n,), generator=g)
        return latents[idx], [captions[i] for i in idx.tolist()]

    return sample


def _load_image_vae(directory: str = VAE_DIR):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(directory, dtype=torch.float32).eval()


def _load_video_vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan.from_pretrained(WAN_VAE_DIR, dtype=torch.float32).eval()


@torch.no_grad()
def _encode_videos(vae, videos: torch.Tensor) -> torch.Tensor:
    latents = vae.encode(videos).latent_dist.mean
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    return (latents - mean) / std


# ------------------------------------------------------------------------------ SD (U-Net)
def _sd_build() -> dict[str, Any]:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=2,
        norm_num_groups=16,
    )
    return {"denoiser": unet, "text_encoder": clip_text_encoder(hidden=64), "tokenizer": build_tokenizer()}


def _sd_condition(parts: dict[str, Any], captions: list[str]) -> dict[str, Any]:
    ids, _ = tokenize(parts["tokenizer"], captions, MAX_LENGTH)
    return {"encoder_hidden_states": parts["text_encoder"](ids)[0]}


def _sd_predict(parts, noisy, t, cond):
    return parts["denoiser"](noisy, t, **cond).sample


def _sd_assemble(parts, vae):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(
        **EPS_SCHEDULE, steps_offset=1, clip_sample=False, set_alpha_to_one=False, prediction_type="v_prediction"
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=parts["denoiser"],
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# ----------------------------------------------------------------------------------- PixArt
def _pixart_build() -> dict[str, Any]:
    from diffusers import PixArtTransformer2DModel

    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        num_attention_heads=4,
        attention_head_dim=32,
        in_channels=4,
        out_channels=4,
        num_layers=8,
        cross_attention_dim=128,
        sample_size=16,
        patch_size=2,
        caption_channels=64,
        norm_num_groups=32,
    )
    return {"denoiser": transformer, "text_encoder": t5_text_encoder(d_model=64), "tokenizer": build_tokenizer()}


def _pixart_condition(parts, captions):
    ids, mask = tokenize(parts["tokenizer"], captions, MAX_LENGTH)
    embeds = parts["text_encoder"](ids, attention_mask=mask).last_hidden_state
    return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}


def _pixart_predict(parts, noisy, t, cond):
    return parts["denoiser"](
        noisy, timestep=t, added_cond_kwargs={"resolution": None, "aspect_ratio": None}, **cond
    ).sample


def _pixart_assemble(parts, vae):
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline

    return PixArtAlphaPipeline(
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        vae=vae,
        transformer=parts["denoiser"],
        scheduler=DPMSolverMultistepScheduler(**EPS_SCHEDULE, prediction_type="v_prediction"),
    )


# -------------------------------------------------------------------------------------- SD3
def _sd3_build() -> dict[str, Any]:
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=8,
        attention_head_dim=32,
        num_attention_heads=4,
        joint_attention_dim=64,
        caption_projection_dim=128,
        pooled_projection_dim=64,
        pos_embed_max_size=16,
    )
    return {
        "denoiser": transformer,
        "text_encoder": clip_text_encoder(32, with_projection=True, seed=1),
        "text_encoder_2": clip_text_encoder(32, with_projection=True, seed=2),
        "tokenizer": build_tokenizer(),
    }


def _sd3_condition(parts, captions):
    ids, _ = tokenize(parts["tokenizer"], captions, MAX_LENGTH)
    hidden, pooled = [], []
    for key in ("text_encoder", "text_encoder_2"):
        out = parts[key](ids, output_hidden_states=True)
        hidden.append(out.hidden_states[-2])  # what StableDiffusion3Pipeline uses (clip_skip=None)
        pooled.append(out[0])
    clip = torch.cat(hidden, dim=-1)
    t5_zeros = torch.zeros(clip.shape[0], MAX_LENGTH, clip.shape[-1])  # text_encoder_3=None in the pipeline
    return {"encoder_hidden_states": torch.cat([clip, t5_zeros], dim=-2), "pooled_projections": torch.cat(pooled, -1)}


def _sd3_predict(parts, noisy, t, cond):
    return parts["denoiser"](hidden_states=noisy, timestep=t, **cond).sample


def _sd3_assemble(parts, vae):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(
        transformer=parts["denoiser"],
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=vae,
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        text_encoder_2=parts["text_encoder_2"],
        tokenizer_2=build_tokenizer(),
        text_encoder_3=None,
        tokenizer_3=None,
    )


# -------------------------------------------------------------------------------------- Wan
def _wan_build() -> dict[str, Any]:
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=4,
        attention_head_dim=32,
        in_channels=4,
        out_channels=4,
        text_dim=64,
        freq_dim=64,
        ffn_dim=256,
        num_layers=6,
        rope_max_seq_len=64,
    )
    return {
        "denoiser": transformer,
        "text_encoder": t5_text_encoder(d_model=64, umt5=True),
        "tokenizer": build_tokenizer(),
    }


def _wan_condition(parts, captions):
    ids, mask = tokenize(parts["tokenizer"], captions, MAX_LENGTH)
    embeds = parts["text_encoder"](ids, mask).last_hidden_state
    return {"encoder_hidden_states": embeds * mask[..., None]}  # WanPipeline zero-pads after each prompt's length


def _wan_predict(parts, noisy, t, cond):
    return parts["denoiser"](hidden_states=noisy, timestep=t, **cond).sample


def _wan_assemble(parts, vae):
    from diffusers import UniPCMultistepScheduler, WanPipeline

    return WanPipeline(
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        vae=vae,
        transformer=parts["denoiser"],
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=1.0),
    )


RECIPES: dict[str, Recipe] = {
    "sd-digits": Recipe(
        "sd-digits",
        "v",
        _sd_build,
        _sd_condition,
        _sd_predict,
        _sd_assemble,
        _digit_batches,
        _load_image_vae,
        max_steps=2000,
    ),
    "pixart-shapes": Recipe(
        "pixart-shapes",
        "v",
        _pixart_build,
        _pixart_condition,
        _pixart_predict,
        _pixart_assemble,
        _varied_shape_batches,
        functools.partial(_load_image_vae, VARIED_VAE_DIR),
        max_steps=3000,
    ),
    "sd3-shapes": Recipe(
        "sd3-shapes", "flow", _sd3_build, _sd3_condition, _sd3_predict, _sd3_assemble, _shape_batches, _load_image_vae
    ),
    "wan-moving-shapes": Recipe(
        "wan-moving-shapes",
        "flow",
        _wan_build,
        _wan_condition,
        _wan_predict,
        _wan_assemble,
        _video_batches,
        _load_video_vae,
        max_steps=3200,
        batch_size=16,
    ),
}


def train(
    name: str,
    max_steps: int | None = None,
    seed: int = 0,
    minutes: float = 60.0,
    out_dir: str | None = None,
    vae: Any = None,
) -> dict:
    """Train built-in model ``name`` and save its pipeline (default: under the package weights)."""
    recipe = RECIPES[name]
    vae = vae if vae is not None else recipe.load_vae()
    sample_data = recipe.data(vae)
    parts = recipe.build()
    objective = EpsilonObjective("v_prediction") if recipe.objective == "v" else FlowObjective()
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    trainable = [parts[k] for k in ("denoiser", "text_encoder", "text_encoder_2") if k in parts]

    def loss_fn(step: int) -> torch.Tensor:
        x0, captions = sample_data(g, recipe.batch_size)
        noisy, t, target = objective.sample(x0, g)
        cond = recipe.condition(parts, drop_captions(captions, 0.1, rng))
        return F.mse_loss(recipe.predict(parts, noisy, t, cond), target)

    report, trained = fit(
        name,
        trainable,
        loss_fn,
        batch_size=recipe.batch_size,
        max_steps=max_steps or recipe.max_steps,
        max_minutes=minutes,
        lr=recipe.lr,
        warmup=200,
        ema_decay=0.999,
        seed=seed,
    )
    for key, module in zip([k for k in ("denoiser", "text_encoder", "text_encoder_2") if k in parts], trained):
        parts[key] = half_precision_copy(module)
    pipe = recipe.assemble(parts, half_precision_copy(vae))
    out_dir = out_dir or BUILTIN_MODELS[name].path
    pipe.save_pretrained(out_dir, safe_serialization=True)
    write_report(out_dir, report, {"objective": recipe.objective})
    return report.as_dict()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--max-steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="safety stop; a run it cuts short is not reproducible"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: the shipped weights folder); "
        "use another one to check that a rerun reproduces them",
    )
    args = parser.parse_args(argv)
    print(train(args.name, max_steps=args.max_steps, seed=args.seed, minutes=args.minutes, out_dir=args.out))


if __name__ == "__main__":
    main()
