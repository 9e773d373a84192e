"""Fidelity of an accelerated output to the unaccelerated output of the same seed: PSNR, SSIM, LPIPS.

Images are float tensors in [0, 1] of shape ``(N, 3, H, W)``; videos ``(N, F, 3, H, W)`` are
scored per frame and averaged per video. Each function returns one value per sample.
"""

from __future__ import annotations

import torch

from ..errors import NotFoundError


def _flatten_video(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    if x.ndim == 5:
        n, f = x.shape[:2]
        return x.reshape(n * f, *x.shape[2:]), f
    return x, 1


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample (inf where identical)."""
    p, frames = _flatten_video(pred.float())
    t, _ = _flatten_video(target.float())
    mse = ((p - t) ** 2).flatten(1).mean(1)
    values = 10 * torch.log10(data_range**2 / mse)
    return values.view(-1, frames).mean(1) if frames > 1 else values


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per sample (torchmetrics, Gaussian window 11, sigma 1.5)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, frames = _flatten_video(pred.float())
    t, _ = _flatten_video(target.float())
    kernel = 11 if min(p.shape[-2:]) >= 11 else (min(p.shape[-2:]) // 2) * 2 - 1
    values = structural_similarity_index_measure(p, t, data_range=data_range, reduction="none", kernel_size=kernel)
    return values.view(-1, frames).mean(1) if frames > 1 else values


class LPIPS:
    """LPIPS (Zhang et al. 2018) per sample, via torchmetrics.

    The linear heads ship with torchmetrics; the backbone (AlexNet/VGG/SqueezeNet) comes from
    torchvision's model zoo. Offline, put its file in ``$TORCH_HOME/hub/checkpoints`` first.
    """

    BACKBONE_FILES = {
        "alex": "alexnet-owt-7be5be79.pth",
        "vgg": "vgg16-397923af.pth",
        "squeeze": "squeezenet1_1-b8a52dc0.pth",
    }

    def __init__(self, net: str = "alex") -> None:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        try:
            self.metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True, reduction="sum")
        except Exception as exc:  # urllib errors offline
            import os

            hub = os.path.join(
                os.environ.get("TORCH_HOME", os.path.expanduser("~/.cache/torch")), "hub", "checkpoints"
            )
            raise NotFoundError(
                f"LPIPS needs the torchvision {net} backbone weights ({self.BACKBONE_FILES.get(net)}); this machine "
                "could "
                f"not download them ({type(exc).__name__}). Copy the file into {hub} and retry."
            ) from exc

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p, frames = _flatten_video(pred.float())
        t, _ = _flatten_video(target.float())
        values = []
        for a, b in zip(p, t):
            self.metric.reset()
            values.append(float(self.metric(a[None], b[None])))
        out = torch.tensor(values)
        return out.view(-1, frames).mean(1) if frames > 1 else out
