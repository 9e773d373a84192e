"""Small CNN classifiers that give the proving ground its domain metrics.

Their penultimate features (``num_features`` = 128) feed torchmetrics' FID/KID as a custom
feature network; their probability for the prompted class is the alignment score (the CLIP
score's stand-in). One classifier per dataset: ``digits`` (10 classes) and ``shapes`` (three
heads: shape, colour, position; the video metrics use its shape and colour heads per frame).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

HEADS = {
    "digits": {"digit": 10},
    "shapes": {"shape": 3, "colour": 4, "position": 5},
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
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.GroupNorm(8, 128), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(128, n) for name, n in heads.items()})

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


def save_classifier(model: DomainClassifier, directory: str, extra: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(directory, "classifier.safetensors"))
    with open(os.path.join(directory, "classifier.json"), "w") as f:
        json.dump({"heads": model.head_sizes, **(extra or {})}, f, indent=2)


def load_classifier(directory: str) -> DomainClassifier:
    from safetensors.torch import load_file

    with open(os.path.join(directory, "classifier.json")) as f:
        meta = json.load(f)
    model = DomainClassifier(meta["heads"])
    model.load_state_dict(load_file(os.path.join(directory, "classifier.safetensors")))
    return model.eval()
