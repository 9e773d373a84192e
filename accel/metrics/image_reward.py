"""ImageReward (Xu et al. 2023), optional: only where the ``image-reward`` package and its weights exist."""

from __future__ import annotations

import torch

from ..errors import NotFoundError


class ImageRewardScorer:
    """Per-image human-preference reward. ``weights`` is a local ``ImageReward.pt`` or the model name.

    Offline, put ``ImageReward.pt`` and ``med_config.json`` in ``download_root`` first (the package
    fetches ``med_config.json`` from the hub otherwise).
    """

    def __init__(
        self, weights: str = "ImageReward-v1.0", download_root: str | None = None, device: str = "cpu"
    ) -> None:
        try:
            import ImageReward as RM  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ImportError("ImageReward needs the optional package: pip install image-reward") from exc
        try:
            self.model = RM.load(weights, device=device, download_root=download_root)
        except Exception as exc:
            raise NotFoundError(f"could not load ImageReward weights {weights!r}: {exc}") from exc

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        from PIL import Image

        scores = []
        for image, prompt in zip(images, prompts):
            array = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
            scores.append(float(self.model.score(prompt, Image.fromarray(array))))
        return torch.tensor(scores)
