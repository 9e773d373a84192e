"""Quality and cost metrics, on torchmetrics where it has the metric.

Quality: :func:`frechet_distance` / :func:`kernel_distance` (Inception or any feature network),
:class:`ClipScorer`, fidelity to the baseline (:func:`psnr`, :func:`ssim`, :class:`LPIPS`),
:class:`ImageRewardScorer` (optional), classifier :func:`accuracy` / :func:`top1_agreement`, and
the proving ground's :class:`DomainMetrics`. Cost: :func:`measure_latency`,
:func:`measure_interleaved`, :class:`DenoiserTimer`, :func:`count_flops`, :func:`peak_memory`,
:func:`cache_bytes`. See docs/metrics.md for what each needs and means.
"""

from .classification import accuracy, top1_agreement
from .clip import ClipScorer, clip_loader
from .cost import (
    DenoiserTimer,
    Latency,
    ModuleFlops,
    cache_bytes,
    count_flops,
    measure_interleaved,
    measure_latency,
    peak_memory,
)
from .domain import DomainMetrics, parse_prompt
from .features import feature_network
from .fid import frechet_distance, kernel_distance
from .fidelity import LPIPS, psnr, ssim
from .image_reward import ImageRewardScorer

__all__ = [
    "ClipScorer",
    "DenoiserTimer",
    "DomainMetrics",
    "ImageRewardScorer",
    "LPIPS",
    "Latency",
    "ModuleFlops",
    "accuracy",
    "cache_bytes",
    "clip_loader",
    "count_flops",
    "feature_network",
    "frechet_distance",
    "kernel_distance",
    "measure_interleaved",
    "measure_latency",
    "parse_prompt",
    "peak_memory",
    "psnr",
    "ssim",
    "top1_agreement",
]
