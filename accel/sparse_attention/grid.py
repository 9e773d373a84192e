"""The video token grid (frames, rows, columns after patchifying) of a denoiser call, per family.

A forward pre-hook on the denoiser reads it from the call's inputs; attention processors then
know how the flattened video tokens map to 3D positions. When a family's formula does not match
the token count seen in attention, the processor falls back to a 1-D layout (no 3D reordering).
"""

from __future__ import annotations

from typing import Any

import torch

from ..context import main_input
from ..errors import ConfigError

SUPPORTED_FAMILIES = ("wan", "wan_vace", "skyreels_v2", "cogvideox", "hunyuan_video", "ltx_video")


def _pair(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),)


def video_grid(family: str, model: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[int, int, int] | None:
    """``(frames, rows, columns)`` of video tokens for this call of ``model``, or None if unknown."""
    config = model.config
    x = main_input(args, kwargs)
    if x is None:
        return None
    if family in ("wan", "wan_vace", "skyreels_v2"):
        if x.ndim != 5:
            return None
        pt, ph, pw = _pair(config.patch_size)
        return x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw
    if family in ("cogvideox", "hunyuan_video"):
        if x.ndim != 5:
            return None
        frames, height, width = (x.shape[1], x.shape[3], x.shape[4]) if family == "cogvideox" else x.shape[2:]
        p = int(config.patch_size)
        pt = int(getattr(config, "patch_size_t", None) or 1)
        return frames // pt, height // p, width // p
    if family == "ltx_video":
        names = ("num_frames", "height", "width")
        values = [kwargs.get(n) for n in names]
        for i, _name in enumerate(names):  # positional: (hidden, encoder_hidden, timestep, encoder_mask, F, H, W)
            if values[i] is None and len(args) > 4 + i:
                values[i] = args[4 + i]
        if any(v is None for v in values):
            return None
        p, pt = int(config.patch_size), int(getattr(config, "patch_size_t", 1) or 1)
        return int(values[0]) // pt, int(values[1]) // p, int(values[2]) // p
    raise ConfigError(f"no video grid rule for family {family!r}; supported: {', '.join(SUPPORTED_FAMILIES)}")


class _GridFound(Exception):
    """Raised by :func:`probe_grid`'s hook to stop the pipeline at its first denoiser call."""


def probe_grid(pipe: Any, call: dict[str, Any], prompt: str = "a") -> tuple[int, int, int] | None:
    """The video token grid of ``pipe(prompt, **call)``, or None when its denoiser is not a video DiT of
    :data:`SUPPORTED_FAMILIES` or the grid cannot be read.

    Runs the pipeline up to its first denoiser call (text encoding and latent preparation, no denoising
    step) and reads the grid from that call's inputs, with the same rule the plugin uses."""
    from ..api import adapter_of

    try:
        adapter = adapter_of(pipe)
    except Exception:  # noqa: BLE001 - not a pipeline accel knows: no grid
        return None
    denoiser = getattr(pipe, "transformer", None)
    if adapter.kind != "video_dit" or adapter.family not in SUPPORTED_FAMILIES or denoiser is None:
        return None
    found: dict[str, tuple[int, int, int] | None] = {}

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        found["grid"] = video_grid(adapter.family, module, args, kwargs)
        raise _GridFound

    handle = denoiser.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            pipe(prompt=prompt, **{**call, "num_inference_steps": 1, "output_type": "latent"})
    except _GridFound:
        pass
    finally:
        handle.remove()
    return found.get("grid")
