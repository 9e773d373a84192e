"""CLIP score (Hessel et al. 2021) from a hub id or a local directory, in one place.

torchmetrics 1.9's ``CLIPScore`` accepts only a few hub names by substring and breaks with
transformers 5 (``get_image_features`` returns a ``ModelOutput``). We always hand it a loader
callable that returns ``(model, processor)`` with the features unwrapped, which fixes both.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import NotFoundError

DEFAULT_CLIP = "openai/clip-vit-base-patch16"


class _TensorFeatures(nn.Module):
    """Wraps a transformers CLIPModel so ``get_*_features`` return tensors (transformers >= 5 returns outputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    @staticmethod
    def _tensor(out):
        if torch.is_tensor(out):
            return out
        pooled = getattr(out, "pooler_output", None)
        return pooled if pooled is not None else out[0]

    def get_image_features(self, *args, **kwargs):
        return self._tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs):
        return self._tensor(self.model.get_text_features(*args, **kwargs))


def clip_loader(name_or_path: str = DEFAULT_CLIP, local_files_only: bool | None = None):
    """A zero-argument callable returning ``(model, processor)`` for torchmetrics' CLIPScore."""
    import os

    from transformers import CLIPModel, CLIPProcessor

    if local_files_only is None:
        local_files_only = os.path.isdir(name_or_path) or os.environ.get("HF_HUB_OFFLINE") == "1"

    def load():
        model = CLIPModel.from_pretrained(name_or_path, local_files_only=local_files_only).eval()
        processor = CLIPProcessor.from_pretrained(name_or_path, local_files_only=local_files_only)
        return _TensorFeatures(model), processor

    return load


class ClipScorer:
    """CLIP score of images against captions, 0-100 (higher: better aligned)."""

    def __init__(self, name_or_path: str = DEFAULT_CLIP) -> None:
        from torchmetrics.multimodal.clip_score import CLIPScore

        self.name = name_or_path
        try:
            self.metric = CLIPScore(model_name_or_path=clip_loader(name_or_path))
        except OSError as exc:
            raise NotFoundError(
                f"could not load CLIP from {name_or_path!r}: pass a local directory saved with "
                "CLIPModel.save_pretrained / CLIPProcessor.save_pretrained, or run online once to fill the hub cache"
            ) from exc

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """Per-image scores for ``images`` in [0, 1] ``(N, 3, H, W)``."""
        uint8 = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        scores = []
        for image, caption in zip(uint8, captions):
            self.metric.reset()
            scores.append(float(self.metric(image[None], [caption])))
        self.metric.reset()
        return torch.tensor(scores)
