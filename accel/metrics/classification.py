"""Classifier metrics (for RePaViT and other vision-model plugins): accuracy and top-1 agreement."""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``logits`` ``(N, C)`` against integer ``labels`` ``(N,)``."""
    return float((logits.argmax(-1) == labels).float().mean())


def top1_agreement(logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """Fraction of samples where the accelerated model's top-1 class equals the original's."""
    return float((logits.argmax(-1) == reference_logits.argmax(-1)).float().mean())
