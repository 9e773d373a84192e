"""Domain metrics for the proving-ground models (the stand-ins for FID-on-Inception and CLIP score).

* **FID / KID** on the features of the dataset's classifier (real: the held-out split); for videos
  per frame, and **video FID** on a 3D-CNN clip classifier's features (the domain analogue of FVD,
  Unterthiner et al. 2018: it sees motion, which no per-frame feature does).
* **Alignment**: the classifier's probability of what the prompt asks for (digit; shape, colour and
  position averaged; for videos shape and colour per frame plus the motion direction).
* **Temporal consistency** (videos): ``1 - mean |frame_{t+1} - frame_t|`` over consecutive frames
  in [0, 1], the analogue of VBench's temporal-flickering score (1 = perfectly still).
"""

from __future__ import annotations

import re

import torch

from ..errors import ConfigError
from ..pipelines.builtin import data
from .features import feature_network

DATASETS = ("digits", "shapes", "varied_shapes", "moving_shapes")


def parse_prompt(dataset: str, prompt: str) -> dict[str, int]:
    """The attribute labels a built-in prompt asks for, e.g. ``{"digit": 7}``."""
    words = prompt.lower().replace(",", " ").split()
    text = " ".join(words)
    if dataset == "digits":
        for i, word in enumerate(data.DIGIT_WORDS):
            if re.search(rf"\b({i}|{word})\b", text):
                return {"digit": i}
        return {}
    out: dict[str, int] = {}
    for i, shape in enumerate(data.SHAPES):
        if shape in words:
            out["shape"] = i
    for i, colour in enumerate(data.COLOURS):
        if colour in words:
            out["colour"] = i
    if dataset in data.SHAPE_SETS:
        for i, position in enumerate(data.POSITIONS):
            if position in text:
                out["position"] = i
    else:
        for i, direction in enumerate(data.DIRECTIONS):
            if re.search(rf"moving {direction}\b", text):
                out["direction"] = i
    return out


class DomainMetrics:
    """Classifier-based metrics for one built-in dataset.

    The datasets are ``digits``, ``shapes``, ``varied_shapes`` and ``moving_shapes``.
    """

    def __init__(self, dataset: str) -> None:
        if dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        self.dataset = dataset
        self.classifier = feature_network(dataset)
        self._video_classifier = None

    # ------------------------------------------------------------------ reference images
    def real_samples(self, n: int | None = None, split: str = "heldout", seed: int = 0) -> torch.Tensor:
        """Real images (or video frames) in [0, 1] for the FID reference."""
        if self.dataset == "digits":
            images, _ = data.digits(split)
            return data.to_unit(images[:n] if n else images)
        if self.dataset in data.SHAPE_SETS:
            images, _, _ = data.SHAPE_SETS[self.dataset](n or 600, seed, split)
            return data.to_unit(images)
        videos, _, _ = data.moving_shapes(n or 96, seed, split)
        return data.to_unit(videos)

    @staticmethod
    def frames(samples: torch.Tensor) -> torch.Tensor:
        """Images as-is; videos ``(N, F, 3, H, W)`` flattened to frames."""
        return samples.flatten(0, 1) if samples.ndim == 5 else samples

    # ------------------------------------------------------------------ per-sample scores
    @torch.no_grad()
    def alignment(self, samples: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Per-sample probability of the prompted attributes (mean over attributes), in [0, 1]."""
        frames = self.frames(samples)
        per_frame = frames.shape[0] // samples.shape[0]
        probs = self.classifier.probabilities(frames)
        scores = []
        for i, prompt in enumerate(prompts):
            wanted = parse_prompt(self.dataset, prompt)
            parts = []
            for name, label in wanted.items():
                if name == "direction":
                    moved = data.direction_index(data.motion_direction(samples[i : i + 1] * 2 - 1))
                    parts.append(float(moved[0] == label))
                elif name in probs:
                    parts.append(float(probs[name][i * per_frame : (i + 1) * per_frame, label].mean()))
            scores.append(sum(parts) / len(parts) if parts else float("nan"))
        return torch.tensor(scores)

    @staticmethod
    def temporal_consistency(videos: torch.Tensor) -> torch.Tensor:
        """Per video, ``1 - mean |frame_{t+1} - frame_t|`` for frames in [0, 1] (VBench-style flicker score)."""
        if videos.ndim != 5:
            raise ConfigError("temporal consistency needs videos (N, F, 3, H, W)")
        return 1 - (videos[:, 1:] - videos[:, :-1]).abs().flatten(1).mean(1)

    # ------------------------------------------------------------------ set-level scores
    def fid(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        from .fid import frechet_distance

        return frechet_distance(self.frames(real), self.frames(fake), feature=self.classifier)

    def video_fid(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """Frechet distance of whole clips ``(N, F, 3, H, W)`` on the clip classifier's features (FVD-style)."""
        from .fid import frechet_distance

        if self.dataset != "moving_shapes" or real.ndim != 5 or fake.ndim != 5:
            raise ConfigError("video FID needs the moving_shapes dataset and videos (N, F, 3, H, W)")
        if self._video_classifier is None:
            self._video_classifier = feature_network("moving_shapes_video")
        return frechet_distance(real, fake, feature=self._video_classifier)

    def kid(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[float, float]:
        from .fid import kernel_distance

        return kernel_distance(self.frames(real), self.frames(fake), feature=self.classifier)
