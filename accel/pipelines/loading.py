"""``accel.pipelines.load``: built-in models by name, real models by hub id or local path."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from ..errors import NotFoundError, UnsupportedModelError
from .builtin import BUILTIN_MODELS, DEFAULT_MODEL


def load(
    name_or_path: str = DEFAULT_MODEL,
    *,
    torch_dtype: torch.dtype = torch.float32,
    device: str | None = None,
    **kwargs: Any,
) -> Any:
    """A ready pipeline (or timm model) for a built-in name, a hub id or a local directory.

    Built-in names: ``sd-digits``, ``pixart-shapes``, ``sd3-shapes``, ``wan-moving-shapes``
    (diffusers pipelines) and ``vit-digits`` (a timm classifier). Anything else is handed to
    ``DiffusionPipeline.from_pretrained`` (a hub id such as ``"stabilityai/stable-diffusion-3-medium-diffusers"``
    needs network access the first time, then works from the local cache).
    """
    if name_or_path in BUILTIN_MODELS:
        spec = BUILTIN_MODELS[name_or_path]
        if not spec.is_trained():
            raise NotFoundError(
                f"built-in model {name_or_path!r} has no weights at {spec.path}; train it with "
                f"`accel train {name_or_path}`"
            )
        if spec.kind == "classifier":
            from .builtin.vit import load_vit

            model = load_vit(spec.path)
            return model.to(device) if device else model
        path = spec.path
    else:
        path = name_or_path
        looks_local = os.path.isabs(name_or_path) or name_or_path.startswith(("./", "../", "~"))
        if looks_local and not os.path.isdir(os.path.expanduser(name_or_path)):
            raise NotFoundError(
                f"no such directory: {name_or_path!r} (built-in models: {', '.join(BUILTIN_MODELS)}; "
                "hub ids look like 'org/name')"
            )
        path = os.path.expanduser(name_or_path)
    from diffusers import DiffusionPipeline

    if os.path.isdir(path):
        kwargs = {**_absent_components(path), **kwargs}
    try:
        pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=torch_dtype, **kwargs)
    except OSError as exc:
        raise UnsupportedModelError(
            f"could not load {name_or_path!r}: not a built-in model ({', '.join(BUILTIN_MODELS)}), and loading it "
            f"as a diffusers pipeline failed: {exc}"
        ) from exc
    if device:
        pipe = pipe.to(device)
    return pipe


def _absent_components(path: str) -> dict[str, None]:
    """Components saved as ``[null, null]`` in model_index.json must be passed as None explicitly."""
    index = os.path.join(path, "model_index.json")
    if not os.path.exists(index):
        return {}
    with open(index) as f:
        entries = json.load(f)
    return {k: None for k, v in entries.items() if isinstance(v, list) and v == [None, None]}
