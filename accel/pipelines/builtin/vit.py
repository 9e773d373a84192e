"""The built-in timm ViT classifier (``vit-digits``): training and loading.

A real ``timm.models.vision_transformer.VisionTransformer`` (32x32 input, 4x4 patches, 6 blocks,
width 96) trained on the digits train split; RePaViT's accuracy is measured on it.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

from . import BUILTIN_MODELS, data
from .training import fit, write_report

VIT_KWARGS = dict(
    img_size=32,
    patch_size=4,
    in_chans=3,
    num_classes=10,
    embed_dim=96,
    depth=6,
    num_heads=3,
    mlp_ratio=4.0,
    class_token=True,
    global_pool="token",
)


def build_vit(**overrides) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**{**VIT_KWARGS, **overrides})


def load_vit(directory: str) -> torch.nn.Module:
    from safetensors.torch import load_file

    with open(os.path.join(directory, "config.json")) as f:
        kwargs = json.load(f)["model_kwargs"]
    model = build_vit(**kwargs)
    model.load_state_dict({k: v.float() for k, v in load_file(os.path.join(directory, "model.safetensors")).items()})
    return model.eval()


def save_vit(model: torch.nn.Module, directory: str, extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    save_file(
        {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()},
        os.path.join(directory, "model.safetensors"),
    )
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({"model_kwargs": VIT_KWARGS, **(extra or {})}, f, indent=2)


def evaluate(model: torch.nn.Module, split: str = "heldout") -> float:
    images, labels = data.digits(split)
    with torch.no_grad():
        logits = model(images)
    return float((logits.argmax(-1) == labels).float().mean())


def train_vit(
    minutes: float = 30.0, max_steps: int = 3000, batch_size: int = 64, seed: int = 0, out_dir: str | None = None
) -> dict:
    torch.manual_seed(seed)
    model = build_vit()
    images, labels = data.digits("train")
    g = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x = data.augment_digits(images[idx], g)
        return F.cross_entropy(model(x), labels[idx], label_smoothing=0.1)

    report, (trained,) = fit(
        "vit-digits",
        [model],
        loss_fn,
        batch_size=batch_size,
        max_steps=max_steps,
        max_minutes=minutes,
        lr=1e-3,
        warmup=200,
        weight_decay=0.05,
        ema_decay=0.998,
        seed=seed,
    )
    accuracy = evaluate(trained)
    out = out_dir or BUILTIN_MODELS["vit-digits"].path
    save_vit(trained, out, {"heldout_accuracy": accuracy})
    write_report(out, report, {"heldout_accuracy": accuracy})
    return {**report.as_dict(), "heldout_accuracy": accuracy}


if __name__ == "__main__":
    print(train_vit())
