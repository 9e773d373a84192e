"""Diffusion training objectives and conditioning helpers shared by the built-in model trainers.

* :class:`EpsilonObjective`: DDPM noise prediction on the SD ``scaled_linear`` schedule (used
  with DDIM / DPM-Solver at inference); ``prediction="v_prediction"`` trains the velocity
  ``alpha e - sigma x_0`` instead (SD 2.x style), which conditions better at high noise.
* :class:`FlowObjective`: rectified flow, ``x_t = (1 - s) x_0 + s e``, target ``e - x_0``,
  logit-normal ``s``, timestep ``1000 s`` (FlowMatchEuler / UniPC-flow at inference).
"""

from __future__ import annotations

import random

import torch

#: The SD 1.x noise schedule; inference schedulers of the epsilon models use the same values.
EPS_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


class EpsilonObjective:
    def __init__(self, prediction: str = "epsilon") -> None:
        from diffusers import DDPMScheduler

        self.prediction = prediction
        self.scheduler = DDPMScheduler(**EPS_SCHEDULE, prediction_type=prediction)

    def sample(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(noisy, timesteps, target)``."""
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, 1000, (x0.shape[0],), generator=generator)
        noisy = self.scheduler.add_noise(x0, noise, t)
        target = noise if self.prediction == "epsilon" else self.scheduler.get_velocity(x0, noise, t)
        return noisy, t, target


class FlowObjective:
    def sample(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noise = torch.randn(x0.shape, generator=generator)
        s = torch.sigmoid(torch.randn(x0.shape[0], generator=generator))
        shape = (-1,) + (1,) * (x0.ndim - 1)
        noisy = (1 - s.view(shape)) * x0 + s.view(shape) * noise
        return noisy, s * 1000.0, noise - x0


def drop_captions(captions: list[str], p: float, rng: random.Random) -> list[str]:
    """Replace captions by the empty prompt with probability ``p`` (classifier-free guidance training)."""
    return ["" if rng.random() < p else c for c in captions]


def tokenize(tokenizer, captions: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(captions, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    return enc.input_ids, enc.attention_mask


@torch.no_grad()
def encode_images(vae, images: torch.Tensor) -> torch.Tensor:
    """Scaled latents of ``images`` in [-1, 1] (posterior mean, as the built-in pipelines expect)."""
    latents = vae.encode(images).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor
