"""The vision tab's logic, without Gradio: classify an image with the built-in timm ViT and its RePaViT
version, and time both.

The RePaViT model is, in order of preference:

1. a fine-tuned, folded checkpoint saved by ``accel.reparam.save_reparameterized`` in
   :data:`FINETUNED_DIRS` (``accel/pipelines/builtin/weights/vit-digits-repavit/`` or the folder the
   fine-tune recipe writes, ``runs/repavit-vit-digits/folded``);
2. otherwise the original converted on the fly (``to_repavit``), its BatchNorms calibrated on
   training digits and folded (``reparameterize``). That model is *not fine-tuned*: RePaViT is not
   training-free for LayerNorm ViTs, so expect its accuracy to drop.

Both models are plain modules in eval mode and never change after loading, so requests can run
concurrently.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any

import torch
import torch.nn as nn

from ..pipelines.builtin import BUILTIN_MODELS, WEIGHTS_DIR
from .models import AppError, one_line

FINETUNED_DIRS = (
    os.path.join(WEIGHTS_DIR, "vit-digits-repavit"),
    os.path.join("runs", "repavit-vit-digits", "folded"),
)
CLASS_NAMES = tuple(str(d) for d in range(10))
CALIBRATION_IMAGES = 512


class VisionModels:
    """The original ViT and its RePaViT version, loaded lazily once (thread-safe).

    Args:
        original: a timm ViT to use instead of the built-in ``vit-digits`` (tests).
        finetuned: a RePaViT checkpoint directory to use (default: the first of :data:`FINETUNED_DIRS`
            that exists); ``False`` forces the on-the-fly conversion.
        idle_ratio: idle ratio of the on-the-fly conversion.
    """

    def __init__(
        self,
        original: nn.Module | None = None,
        finetuned: str | bool | None = None,
        idle_ratio: float = 0.75,
        class_names: tuple[str, ...] = CLASS_NAMES,
    ) -> None:
        self._given = original
        self._finetuned = finetuned
        self.idle_ratio = idle_ratio
        self.class_names = class_names
        self._lock = threading.Lock()
        self.original: nn.Module | None = None
        self.repavit: nn.Module | None = None
        self.description = ""
        self.finetuned = False

    def status(self) -> tuple[bool, str]:
        """``(ready to load, a sentence for the user)``."""
        if self._given is not None:
            return True, "a ViT handed to the app"
        spec = BUILTIN_MODELS["vit-digits"]
        if not os.path.isfile(os.path.join(spec.path, "model.safetensors")):
            return False, (
                f"the built-in ViT `vit-digits` has no weights yet (expected in "
                f"{os.path.relpath(spec.path)}); train it with `accel train vit-digits`"
            )
        return True, spec.title

    def checkpoint(self) -> str | None:
        if self._finetuned is False:
            return None
        if isinstance(self._finetuned, str):
            return self._finetuned
        for path in FINETUNED_DIRS:
            if os.path.isfile(os.path.join(path, "model.safetensors")):
                return path
        return None

    def load(self) -> None:
        if self.repavit is not None:
            return
        with self._lock:
            if self.repavit is not None:
                return
            ok, message = self.status()
            if not ok:
                raise AppError(message)
            try:
                original = self._given
                if original is None:
                    from ..pipelines.builtin.vit import load_vit

                    original = load_vit(BUILTIN_MODELS["vit-digits"].path)
                original = original.eval()
                repavit, description, finetuned = self._repavit(original)
            except AppError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise AppError(f"the vision models could not be loaded: {one_line(exc)}") from None
            self.original, self.repavit = original, repavit.eval()
            self.description, self.finetuned = description, finetuned

    def _repavit(self, original: nn.Module) -> tuple[nn.Module, str, bool]:
        from ..reparam import calibrate_batchnorm, load_reparameterized, reparameterize, to_repavit

        path = self.checkpoint()
        if path is not None:
            model = load_reparameterized(path)
            if not any(True for _ in model.parameters()):
                raise AppError(f"{path} holds no weights")
            return model, f"fine-tuned RePaViT from `{os.path.relpath(path)}`", True
        from ..pipelines.builtin import data

        student = to_repavit(original, self.idle_ratio)
        images, _ = data.digits("train")
        size = _input_size(original)
        images = images[:CALIBRATION_IMAGES]
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        calibrate_batchnorm(student, images, max_batches=8, batch_size=64)
        folded = reparameterize(student, inplace=True)
        return (
            folded,
            (
                f"**not fine-tuned**: converted on the fly (idle ratio {self.idle_ratio}), BatchNorms "
                f"calibrated on {len(images)} training digits, folded. Fine-tune it with "
                "`accel reparam finetune` and copy `runs/repavit-vit-digits/folded` to "
                f"`{os.path.relpath(FINETUNED_DIRS[0])}`"
            ),
            False,
        )

    # ------------------------------------------------------------------ inference
    def input_size(self) -> int:
        self.load()
        return _input_size(self.original)

    @torch.no_grad()
    def classify(self, image: torch.Tensor, repeats: int = 10) -> dict[str, Any]:
        """Both models on one image ``(3, H, W)`` in [-1, 1]: top classes, probabilities, latency."""
        self.load()
        x = image[None].float()
        out: dict[str, Any] = {}
        times: dict[str, list[float]] = {"original": [], "repavit": []}
        models = {"original": self.original, "repavit": self.repavit}
        for name, model in models.items():  # warm-up
            out[name] = torch.softmax(model(x).float(), -1)[0]
        for _ in range(max(1, repeats)):
            for name, model in models.items():  # interleaved, so load changes hit both alike
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
        result: dict[str, Any] = {"description": self.description, "finetuned": self.finetuned}
        for name, probs in out.items():
            top = int(probs.argmax())
            result[name] = {
                "prediction": self.class_names[top] if top < len(self.class_names) else str(top),
                "confidence": round(float(probs[top]), 4),
                "probabilities": {self._name(i): round(float(p), 4) for i, p in enumerate(probs)},
                "latency_ms": round(1000 * statistics.median(times[name]), 3),
            }
        result["agree"] = result["original"]["prediction"] == result["repavit"]["prediction"]
        result["speedup"] = round(result["original"]["latency_ms"] / max(result["repavit"]["latency_ms"], 1e-9), 3)
        return result

    def _name(self, i: int) -> str:
        return self.class_names[i] if i < len(self.class_names) else str(i)


def _input_size(model: nn.Module) -> int:
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(size, (tuple, list)):
        size = size[0]
    return int(size) if size else 32


def heldout_digit(index: int) -> tuple[torch.Tensor, int]:
    """Held-out digit ``index`` (wraps around): ``(image (3, 32, 32) in [-1, 1], label)``."""
    from ..pipelines.builtin import data

    images, labels = data.digits("heldout")
    i = int(index) % len(labels)
    return images[i], int(labels[i])


def heldout_count() -> int:
    from ..pipelines.builtin import data

    return len(data.digits("heldout")[1])


def prepare_upload(image: Any, size: int) -> tuple[torch.Tensor, bool]:
    """An uploaded picture (PIL or HxWxC array) as a ``(3, size, size)`` tensor in [-1, 1].

    The digits are light strokes on black; a picture that is mostly light (dark ink on paper) is
    inverted. Returns ``(tensor, inverted)``.
    """
    import numpy as np
    from PIL import Image

    if image is None:
        raise AppError("upload an image or pick a held-out digit")
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.ndim not in (2, 3) or array.size == 0:
            raise AppError("the upload is not an image")
        if array.dtype != np.uint8:
            array = np.clip(array, 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    if image.width * image.height > 40_000_000:
        raise AppError("the image is too large (over 40 megapixels)")
    gray = image.convert("L").resize((size, size), Image.BICUBIC)
    tensor = torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255.0)
    inverted = float(tensor.mean()) > 0.5
    if inverted:
        tensor = 1.0 - tensor
    return (tensor * 2 - 1)[None].repeat(3, 1, 1), inverted


def to_preview(image: torch.Tensor, height: int = 160) -> Any:
    """A nearest-upscaled PIL preview of a ``(3, H, W)`` tensor in [-1, 1]."""
    import numpy as np
    from PIL import Image

    array = (((image.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(array)
    scale = max(1, height // picture.height)
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
