"""Small CNN classifiers that give the proving ground its domain metrics.

Their penultimate features feed torchmetrics' FID/KID as a custom feature network; their
probability for the prompted class is the alignment score (the CLIP score's stand-in). Image
classifiers: ``digits`` (10 classes), ``shapes`` (three heads: shape, colour, position; the video
metrics use its shape and colour heads per frame) and ``varied_shapes`` (the same three, plus binned
size, background and shading heads that only shape its features). The video classifier
``moving_shapes`` (a 3D CNN with shape, colour and direction heads) sees whole clips, so its features
give a video-level FID that motion errors move (the domain analogue of FVD, which uses an I3D action classifier).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError

HEADS = {
    "digits": {"digit": 10},
    "shapes": {"shape": 3, "colour": 4, "position": 5},
    # size, background and shading are binned nuisance attributes, trained so the features carry them
    "varied_shapes": {"shape": 3, "colour": 4, "position": 5, "size": 3, "background": 3, "shading": 4},
    "moving_shapes": {"shape": 3, "colour": 4, "direction": 4},
}


class DomainClassifier(nn.Module):
    """A 4-conv CNN with one linear head per attribute.

    ``forward`` returns 128-d features (what FID needs); :meth:`logits` returns a dict of head
    logits. Inputs are images in [0, 1] (float) or [0, 255] (uint8), ``(N, 3, 32, 32)``.
    """

    num_features = 128

    def __init__(self, heads: dict[str, int]) -> None:
        super().__init__()
        self.head_sizes = dict(heads)
        self.body = self._body()
        self.heads = nn.ModuleDict({name: nn.Linear(self.num_features, n) for name, n in heads.items()})

    def _body(self) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.GroupNorm(8, 32),
            nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.GroupNorm(8, 64),
            nn.GELU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.GroupNorm(8, 64),
            nn.GELU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),
            nn.GroupNorm(8, 128),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    @staticmethod
    def _prepare(x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return x * 2 - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self._prepare(x))

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self(x)
        return {name: head(feats) for name, head in self.heads.items()}

    def probabilities(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: F.softmax(logit, dim=-1) for name, logit in self.logits(x).items()}


class VideoClassifier(DomainClassifier):
    """A 3D CNN over whole clips ``(N, F, 3, 32, 32)``: spatial convs, then space-time convs that see motion.

    64-d features: a video FID compares a few dozen to a few hundred clips, and a Frechet distance
    needs many more samples than feature dimensions to be stable.
    """

    num_features = 64

    def _body(self) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv3d(3, 32, (1, 3, 3), padding=(0, 1, 1)),
            nn.GroupNorm(8, 32),
            nn.GELU(),
            nn.Conv3d(32, 64, 3, stride=(1, 2, 2), padding=1),
            nn.GroupNorm(8, 64),
            nn.GELU(),
            nn.Conv3d(64, 64, 3, stride=(2, 1, 1), padding=1),
            nn.GroupNorm(8, 64),
            nn.GELU(),
            nn.Conv3d(64, 64, 3, stride=2, padding=1),
            nn.GroupNorm(8, 64),
            nn.GELU(),
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
        )

    @staticmethod
    def _prepare(x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ConfigError(f"the video classifier takes clips (N, frames, 3, H, W), got shape {tuple(x.shape)}")
        return DomainClassifier._prepare(x).transpose(1, 2)  # Conv3d wants (N, 3, frames, H, W)


def save_classifier(model: DomainClassifier, directory: str, extra: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(directory, "classifier.safetensors")
    )
    with open(os.path.join(directory, "classifier.json"), "w") as f:
        json.dump(
            {"heads": model.head_sizes, "video": isinstance(model, VideoClassifier), **(extra or {})}, f, indent=2
        )


def load_classifier(directory: str) -> DomainClassifier:
    from safetensors.torch import load_file

    with open(os.path.join(directory, "classifier.json")) as f:
        meta = json.load(f)
    model = (VideoClassifier if meta.get("video") else DomainClassifier)(meta["heads"])
    model.load_state_dict(load_file(os.path.join(directory, "classifier.safetensors")))
    return model.eval()
