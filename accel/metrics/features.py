"""Feature networks for FID/KID: Inception (standard) or any ``nn.Module`` (e.g. a domain classifier).

``feature_network("inception", weights_path=...)`` builds torch-fidelity's Inception-v3 the way
torchmetrics does (install ``accel[inception]``); the weights file is
``weights-inception-2015-12-05-6726825d.pth`` from the torch-fidelity v0.2.0 release, which is
downloaded into the torch hub cache when the machine is online, or read from ``weights_path``.
``feature_network("digits")`` / ``("shapes")`` / ``("varied_shapes")`` returns the proving-ground classifier
(``"moving_shapes"``: the shapes classifier, applied per frame); ``"moving_shapes_video"`` the 3D-CNN clip
classifier.
"""

from __future__ import annotations

import os

import torch.nn as nn

from ..errors import ConfigError

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS}"


def feature_network(spec: str | nn.Module, weights_path: str | None = None) -> nn.Module | int:
    """A feature extractor for torchmetrics' FID/KID.

    Returns an ``nn.Module`` with an integer ``num_features`` (used as-is by torchmetrics, which then
    feeds it float images in [0, 1]) or, for ``"inception"``, the int 2048 that makes torchmetrics
    build Inception-v3 itself (then images go in as uint8).
    """
    if isinstance(spec, nn.Module):
        if not isinstance(getattr(spec, "num_features", None), int):
            raise ConfigError("a custom feature network needs an integer `num_features` attribute (its output width)")
        return spec.eval()
    if spec == "inception":
        try:
            import torch_fidelity  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "Inception features need torch-fidelity: pip install 'accel[inception]' "
                "(or pass a feature network module)"
            ) from exc
        if weights_path is not None and not os.path.exists(weights_path):
            raise ConfigError(f"Inception weights not found at {weights_path!r}; download {INCEPTION_URL}")
        return 2048
    if spec in ("digits", "shapes", "varied_shapes", "moving_shapes", "moving_shapes_video"):
        from ..pipelines.builtin import CLASSIFIER_DIRS
        from ..pipelines.builtin.classifier import load_classifier

        directory = CLASSIFIER_DIRS[
            {"moving_shapes": "shapes", "moving_shapes_video": "moving_shapes"}.get(spec, spec)
        ]
        if not os.path.isdir(directory):
            raise ConfigError(
                f"the {spec} classifier has no weights at {directory}; train it with "
                "`python -m accel.pipelines.builtin.train_classifiers`"
            )
        return load_classifier(directory)
    raise ConfigError(
        f"unknown feature network {spec!r}; use 'inception', 'digits', 'shapes', 'varied_shapes', "
        "'moving_shapes', 'moving_shapes_video' or an nn.Module with a num_features attribute"
    )
