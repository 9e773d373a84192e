"""FID and KID between two image sets, on torchmetrics (Heusel et al. 2017; Binkowski et al. 2018).

Images are float tensors in [0, 1], ``(N, 3, H, W)``. With a custom feature network the images
are passed to it unchanged; with Inception they are converted to uint8 as torchmetrics expects.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .features import feature_network


def _batches(images: torch.Tensor, batch_size: int):
    for i in range(0, len(images), batch_size):
        yield images[i : i + batch_size]


@torch.no_grad()
def frechet_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    feature: str | nn.Module = "inception",
    weights_path: str | None = None,
    batch_size: int = 256,
) -> float:
    """FID between ``real`` and ``fake`` (both ``(N, 3, H, W)`` in [0, 1])."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    net = feature_network(feature, weights_path)
    kwargs = {"feature_extractor_weights_path": weights_path} if isinstance(net, int) and weights_path else {}
    metric = FrechetInceptionDistance(feature=net, normalize=True, **kwargs)
    for chunk in _batches(real, batch_size):
        metric.update(chunk.float(), real=True)
    for chunk in _batches(fake, batch_size):
        metric.update(chunk.float(), real=False)
    return float(metric.compute())


@torch.no_grad()
def kernel_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    feature: str | nn.Module = "inception",
    weights_path: str | None = None,
    subset_size: int | None = None,
    batch_size: int = 256,
) -> tuple[float, float]:
    """KID (mean, std over subsets) between ``real`` and ``fake``."""
    from torchmetrics.image.kid import KernelInceptionDistance

    net = feature_network(feature, weights_path)
    subset = subset_size or min(len(real), len(fake), 1000)
    kwargs = {"feature_extractor_weights_path": weights_path} if isinstance(net, int) and weights_path else {}
    metric = KernelInceptionDistance(feature=net, subset_size=subset, normalize=True, **kwargs)
    for chunk in _batches(real, batch_size):
        metric.update(chunk, real=True)
    for chunk in _batches(fake, batch_size):
        metric.update(chunk, real=False)
    mean, std = metric.compute()
    return float(mean), float(std)
