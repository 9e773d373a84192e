"""Train the built-in autoencoders: two ``AutoencoderKL`` (32x32 RGB -> 16x16x4 latents), one shared by
sd-digits and sd3-shapes and one for pixart-shapes' varied shapes, and an ``AutoencoderKLWan``
(9x32x32 video -> 5x16x16x4 latents) for the video model.

Loss: L1 + MSE reconstruction plus a small KL term. After training, the latent statistics set
``scaling_factor`` (2D) and ``latents_mean``/``latents_std`` (Wan) the way the real models do.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from . import WEIGHTS_DIR, data
from .training import fit, half_precision_copy, write_report

WAN_VAE_DIR = os.path.join(WEIGHTS_DIR, "vae-wan-video")


def _image_pool(n_shapes: int, seed: int) -> torch.Tensor:
    digits, _ = data.digits("train")
    shapes, _, _ = data.shapes(n_shapes, seed)
    videos, _, _ = data.moving_shapes(n_shapes // 18, seed)
    return torch.cat([digits, shapes, videos.flatten(0, 1)])


def _vae_loss(recon: torch.Tensor, target: torch.Tensor, posterior, kl_weight: float) -> torch.Tensor:
    return F.l1_loss(recon, target) + F.mse_loss(recon, target) + kl_weight * posterior.kl().mean()


def _fit_autoencoder(
    name: str,
    vae: torch.nn.Module,
    samples: torch.Tensor,
    *,
    probe_size: int,
    batch_size: int,
    max_steps: int,
    minutes: float,
    seed: int,
):
    """The recipe both share (AdamW 1e-3, 100 warm-up steps, no EMA, batches drawn from ``samples``).
    Returns the report, the trained model, the latent means of a held probe and its reconstruction PSNR."""
    g = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> torch.Tensor:
        x = samples[torch.randint(len(samples), (batch_size,), generator=g)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=g)).sample
        return _vae_loss(recon, x, posterior, 1e-6)

    report, (trained,) = fit(
        name,
        [vae],
        loss_fn,
        batch_size=batch_size,
        max_steps=max_steps,
        max_minutes=minutes,
        lr=1e-3,
        warmup=100,
        ema_decay=None,
        seed=seed,
    )
    with torch.no_grad():
        probe = samples[torch.randperm(len(samples), generator=g)[:probe_size]]
        latents = trained.encode(probe).latent_dist.mean
        recon = trained.decode(latents).sample
        psnr = float(-10 * torch.log10(F.mse_loss(((recon + 1) / 2).clamp(0, 1), (probe + 1) / 2)))
    return report, trained, latents, psnr


def _mixed_pool(seed: int) -> torch.Tensor:
    return _image_pool(6000, seed)


def _varied_shapes_pool(seed: int) -> torch.Tensor:
    return data.varied_shapes(12000, seed)[0]


#: Image autoencoders by name, with the function that draws their training images (from a seed).
#: ``vae-rgb32`` serves sd-digits and sd3-shapes; ``vae-varied-shapes`` serves pixart-shapes, whose
#: shading and gradient backgrounds the first one never saw.
IMAGE_VAES: dict[str, Callable[[int], torch.Tensor]] = {
    "vae-rgb32": _mixed_pool,
    "vae-varied-shapes": _varied_shapes_pool,
}


def train_image_vae(
    name: str = "vae-rgb32",
    minutes: float = 30.0,
    max_steps: int = 2400,
    batch_size: int = 32,
    seed: int = 0,
    out_dir: str | None = None,
) -> dict:
    from diffusers import AutoencoderKL

    if name not in IMAGE_VAES:
        raise ConfigError(f"unknown image autoencoder {name!r}; known: {', '.join(IMAGE_VAES)}")
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
    )
    pool = IMAGE_VAES[name](seed)
    report, trained, latents, psnr = _fit_autoencoder(
        name, vae, pool, probe_size=512, batch_size=batch_size, max_steps=max_steps, minutes=minutes, seed=seed
    )
    trained.register_to_config(scaling_factor=float(1.0 / latents.std()), shift_factor=0.0)
    out_dir = out_dir or os.path.join(WEIGHTS_DIR, name)
    half_precision_copy(trained).save_pretrained(out_dir)
    write_report(
        out_dir, report, {"reconstruction_psnr_db": round(psnr, 2), "scaling_factor": trained.config.scaling_factor}
    )
    return {**report.as_dict(), "psnr": psnr}


def train_video_vae(
    minutes: float = 45.0, max_steps: int = 1200, batch_size: int = 8, seed: int = 0, out_dir: str = WAN_VAE_DIR
) -> dict:
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=16,
        z_dim=4,
        dim_mult=[1, 2],
        num_res_blocks=1,
        temperal_downsample=[True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
        scale_factor_temporal=2,
        scale_factor_spatial=2,
    )
    videos, _, _ = data.moving_shapes(2400, seed)
    videos = videos.permute(0, 2, 1, 3, 4).contiguous()  # (N, 3, F, H, W)
    report, trained, latents, psnr = _fit_autoencoder(
        "vae-wan-video",
        vae,
        videos,
        probe_size=64,
        batch_size=batch_size,
        max_steps=max_steps,
        minutes=minutes,
        seed=seed,
    )
    mean = latents.mean(dim=(0, 2, 3, 4)).tolist()
    std = latents.std(dim=(0, 2, 3, 4)).tolist()
    trained.register_to_config(latents_mean=mean, latents_std=std)
    half_precision_copy(trained).save_pretrained(out_dir)
    write_report(out_dir, report, {"reconstruction_psnr_db": round(psnr, 2), "latents_mean": mean, "latents_std": std})
    return {**report.as_dict(), "psnr": psnr}


if __name__ == "__main__":
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("image", "all"):
        print(train_image_vae("vae-rgb32"))
    if which in ("varied", "all"):
        print(train_image_vae("vae-varied-shapes"))
    if which in ("video", "all"):
        print(train_video_vae())
