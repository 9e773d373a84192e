"""The samples ``accel tune`` scores a stack on: prompts x seeds, their full-step baseline, and the
stack's FLOPs and quality (PSNR / SSIM to the baseline, domain alignment on built-in models)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .. import api
from ..metrics.cost import ModuleFlops
from ..metrics.fidelity import psnr, ssim


class Samples:
    """Prompts x seeds, their full-step baseline, and how to score a stack on them.

    Each sample has its own generator, so a sample's image does not depend on which others share its
    pipeline call: ``batch_size`` bounds memory without changing results."""

    def __init__(
        self,
        pipe: Any,
        prompts: list[str],
        seeds: list[int],
        call: dict[str, Any],
        metric: str,
        domain: Any,
        batch_size: int | None = None,
    ):
        self.pipe = pipe
        self.items = [(p, s) for s in seeds for p in prompts]
        self.call = call
        self.metric = metric
        self.domain = domain
        self.batch_size = batch_size or len(self.items)
        self.latent_shape: tuple[int, ...] | None = None
        self.baseline, self.baseline_flops = self.generate(call["num_inference_steps"], [])

    @torch.no_grad()
    def generate(
        self, steps: int, configs: list[Any], prompts: list[tuple[str, int]] | None = None, count: bool = True
    ) -> Any:
        """Images of the stack on these samples, and the denoiser FLOPs counted while it ran (``count``;
        off for timing, since the counter's dispatch overhead would be timed too)."""
        items = prompts or self.items
        denoiser = getattr(self.pipe, "unet", None) or self.pipe.transformer
        api.remove(self.pipe)
        handle = api.apply(self.pipe, *configs)  # with no config: the loop context alone (it reads the latent size)
        chunks = []
        try:
            with ModuleFlops(denoiser) if count else contextlib.nullcontext() as flops:
                for start in range(0, len(items), self.batch_size):
                    batch = items[start : start + self.batch_size]
                    out = self.pipe(
                        prompt=[p for p, _ in batch],
                        generator=[torch.Generator("cpu").manual_seed(s) for _, s in batch],
                        output_type="pt",
                        **{**per_prompt(self.call, len(batch)), "num_inference_steps": steps},
                    )
                    chunks.append((out.frames if hasattr(out, "frames") else out.images).float().clamp(0, 1).cpu())
            self.latent_shape = handle.context.latent_shape
        finally:
            api.remove(self.pipe)
        return torch.cat(chunks), float(flops.total) if count else None

    def score(self, steps: int, configs: list[Any]) -> dict[str, float]:
        images, flops = self.generate(steps, configs)
        row = {
            "flops_ratio": flops / self.baseline_flops,
            "psnr": float(psnr(images, self.baseline).clamp(max=100).mean()),
            "ssim": float(ssim(images, self.baseline).mean()),
        }
        if self.domain is not None:
            row["alignment"] = float(self.domain.alignment(images, [p for p, _ in self.items]).mean())
        return row


def per_prompt(call: dict[str, Any], count: int) -> dict[str, Any]:
    """``call`` for a list of ``count`` prompts: a text negative prompt (``negative_prompt``,
    ``negative_prompt_2``, ...) repeated for each, as diffusers wants it of the same type as the prompt."""
    return {
        key: [value] * count if key.startswith("negative_prompt") and isinstance(value, str) else value
        for key, value in call.items()
    }
