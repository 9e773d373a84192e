"""The proving ground: small models of real diffusers and timm classes, trained here and shipped.

Each built-in model is a stock pipeline (or a timm classifier) whose weights live in
``accel/pipelines/builtin/weights/<name>``. :func:`accel.pipelines.load` returns them ready to
use; ``call_defaults`` are the keyword arguments the evaluation and the demo pass to the
pipeline (small resolution, moderate guidance).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
#: Shipped tuned plans, one folder per model (``accel tune MODEL --out PLANS_DIR/MODEL``).
PLANS_DIR = os.path.join(os.path.dirname(__file__), "plans")


@dataclasses.dataclass(frozen=True)
class BuiltinModel:
    """A built-in model: which pipeline class, which data, how to call it."""

    name: str
    title: str
    kind: str  # "image", "video" or "classifier"
    pipeline_class: str  # diffusers pipeline class (or "timm")
    dataset: str  # "digits", "shapes", "varied_shapes" or "moving_shapes"
    plugins: tuple[str, ...]  # accel methods this model is meant to exercise
    call_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def path(self) -> str:
        return os.path.join(WEIGHTS_DIR, self.name)

    @property
    def plan_dir(self) -> str:
        """The folder of the plan ``accel tune`` made for this model (``plan.json`` and its data files)."""
        return os.path.join(PLANS_DIR, self.name)

    def is_trained(self) -> bool:
        return os.path.isdir(self.path) and bool(os.listdir(self.path))


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            "sd-digits",
            "U-Net (UNet2DConditionModel) on handwritten digits",
            "image",
            "StableDiffusionPipeline",
            "digits",
            ("deepcache", "adaptive_guidance"),
            {"num_inference_steps": 20, "guidance_scale": 2.0, "height": 32, "width": 32},
        ),
        BuiltinModel(
            "pixart-shapes",
            "PixArt (PixArtTransformer2DModel) on varied coloured shapes",
            "image",
            "PixArtAlphaPipeline",
            "varied_shapes",
            ("block_cache", "cache_search", "adaptive_guidance"),
            {
                "num_inference_steps": 20,
                "guidance_scale": 2.0,
                "height": 32,
                "width": 32,
                "use_resolution_binning": False,
                "max_sequence_length": 16,
                "clean_caption": False,
            },
        ),
        BuiltinModel(
            "sd3-shapes",
            "SD3 (SD3Transformer2DModel, flow matching) on coloured shapes",
            "image",
            "StableDiffusion3Pipeline",
            "shapes",
            ("ras", "block_cache", "adaptive_guidance"),
            # 16 (zero) T5 tokens as in training; the pipeline's default of 256 would pad 240 more
            {"num_inference_steps": 20, "guidance_scale": 2.0, "height": 32, "width": 32, "max_sequence_length": 16},
        ),
        BuiltinModel(
            "wan-moving-shapes",
            "Wan (WanTransformer3DModel) on moving shapes, 9 frames",
            "video",
            "WanPipeline",
            "moving_shapes",
            ("sparse_attention", "block_cache", "adaptive_guidance"),
            {
                "num_inference_steps": 20,
                "guidance_scale": 2.0,
                "height": 32,
                "width": 32,
                "num_frames": 9,
                "max_sequence_length": 16,
            },
        ),
        BuiltinModel(
            "vit-digits",
            "timm VisionTransformer classifier on handwritten digits",
            "classifier",
            "timm",
            "digits",
            ("repavit",),
        ),
    )
}

#: The model the README's main command and the demo use when none is named.
DEFAULT_MODEL = "sd-digits"

#: Shared components: the 2D autoencoders of the image models and the domain classifiers.
VAE_DIR = os.path.join(WEIGHTS_DIR, "vae-rgb32")
VARIED_VAE_DIR = os.path.join(WEIGHTS_DIR, "vae-varied-shapes")  # pixart-shapes' own autoencoder
CLASSIFIER_DIRS = {
    "digits": os.path.join(WEIGHTS_DIR, "classifier-digits"),
    "shapes": os.path.join(WEIGHTS_DIR, "classifier-shapes"),
    "varied_shapes": os.path.join(WEIGHTS_DIR, "classifier-varied-shapes"),
    "moving_shapes": os.path.join(WEIGHTS_DIR, "classifier-moving-shapes"),
}
