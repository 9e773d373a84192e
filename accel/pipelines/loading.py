"""``accel.pipelines.load``: built-in models by name, real models by hub id or local path."""

from __future__ import annotations

import json
import os
import pickle
from typing import Any

import torch

from ..errors import ConfigError, NotFoundError, UnsupportedModelError
from .builtin import BUILTIN_MODELS, DEFAULT_MODEL


def load(
    name_or_path: str = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | None = None,
    device: str | None = None,
    torch_dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Any:
    """A ready pipeline (or timm model) for a built-in name, a hub id or a local directory.

    Built-in names: ``sd-digits``, ``pixart-shapes``, ``sd3-shapes``, ``wan-moving-shapes``
    (diffusers pipelines) and ``vit-digits`` (a timm classifier). Anything else is handed to
    ``DiffusionPipeline.from_pretrained`` (a hub id such as ``"stabilityai/stable-diffusion-3-medium-diffusers"``
    needs network access the first time, then works from the local cache).

    ``dtype`` (default float32; ``torch_dtype`` is the older name of the same argument) is passed on as
    diffusers' ``dtype``. Weights are read from safetensors only (``use_safetensors=True`` unless you
    pass ``use_safetensors=False`` for a folder you trust): a component that has only pickle weights
    (``.bin``, ``.pt``, ``.ckpt``, ...) raises :class:`~accel.errors.UnsupportedModelError`.
    """
    if dtype is not None and torch_dtype is not None and dtype != torch_dtype:
        raise ConfigError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree; pass dtype only")
    dtype = dtype if dtype is not None else torch_dtype if torch_dtype is not None else torch.float32
    kwargs.setdefault("use_safetensors", True)
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
        if kwargs["use_safetensors"]:
            _check_safetensors(path, name_or_path)
        kwargs = {**_absent_components(path), **kwargs}
    try:
        pipe = DiffusionPipeline.from_pretrained(path, dtype=dtype, **kwargs)
    except pickle.UnpicklingError as exc:  # use_safetensors=False: a pickle that torch's weights-only loader refuses
        raise UnsupportedModelError(
            f"could not load {name_or_path!r}: a pickle weight file holds more than tensors and was refused; "
            "accel supports safetensors weights (*.safetensors)"
        ) from exc
    except OSError as exc:
        hint = "; accel loads safetensors weights only" if kwargs["use_safetensors"] else ""
        raise UnsupportedModelError(
            f"could not load {name_or_path!r}: not a built-in model ({', '.join(BUILTIN_MODELS)}), and loading it "
            f"as a diffusers pipeline failed: {exc}{hint}"
        ) from exc
    if device:
        pipe = pipe.to(device)
    return pipe


#: Weight files that are pickles (torch.save / legacy checkpoints); accel reads safetensors only.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _check_safetensors(path: str, name_or_path: str) -> None:
    """Refuse a pipeline folder in which a component has pickle weights but no ``.safetensors`` file."""
    index = os.path.join(path, "model_index.json")
    if not os.path.isfile(index):
        return  # not a pipeline folder: from_pretrained says so
    try:
        with open(index) as f:
            components = [k for k, v in json.load(f).items() if isinstance(v, list) and v != [None, None]]
    except (OSError, ValueError, AttributeError):
        return  # an unreadable index: from_pretrained says so
    pickled = []
    for component in components:
        folder = os.path.join(path, component)
        files = os.listdir(folder) if os.path.isdir(folder) else []
        if any(f.endswith(".safetensors") for f in files):
            continue
        pickles = sorted(f for f in files if f.endswith(PICKLE_SUFFIXES))
        if pickles:
            pickled.append(f"{component} ({', '.join(pickles)})")
    if pickled:
        raise UnsupportedModelError(
            f"cannot load {name_or_path!r}: accel loads safetensors weights only (*.safetensors, as "
            f"save_pretrained writes them by default; unpickling can run code), and {', '.join(pickled)} "
            f"{'has' if len(pickled) == 1 else 'have'} pickle weights only"
        )


def _absent_components(path: str) -> dict[str, None]:
    """Components saved as ``[null, null]`` in model_index.json must be passed as None explicitly."""
    index = os.path.join(path, "model_index.json")
    if not os.path.exists(index):
        return {}
    with open(index) as f:
        entries = json.load(f)
    return {k: None for k, v in entries.items() if isinstance(v, list) and v == [None, None]}
