"""Where and in what precision a tool runs, and a record of what actually ran.

Every accel tool that loads a model (``accel tune``, ``accel eval``, ``accel search-cache``,
``accel calibrate-linear-ag``, the demo) takes a device and a dtype:

* device ``"auto"`` (the default): the accelerate process's device under ``accelerate launch``
  (``cuda:LOCAL_RANK``, or the CPU with ``--cpu``), else CUDA when available, else the CPU;
* dtype ``"auto"`` (the default): bfloat16 on a CUDA device, float32 elsewhere (bfloat16 matrix
  products on most CPUs are slower than float32 ones).

:func:`what_ran` is the record each tool writes next to its results: device and device name, dtype,
and the torch, diffusers and accel versions.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from .errors import ConfigError

#: The dtypes accel's tools accept by name.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)


def resolve_device(device: str | torch.device | None = "auto", state: Any = None) -> torch.device:
    """The device to run on: ``device`` itself, or for ``"auto"``/None the process's device (an
    accelerate ``PartialState`` in ``state``, or the one ``accelerate launch`` describes in the
    environment), else CUDA when available, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device not in (None, "auto"):
        try:
            resolved = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ConfigError(
                f"device must be 'auto' or a torch device such as 'cpu' or 'cuda:0', got {device!r}"
            ) from None
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for, but this machine has no CUDA device")
        return resolved
    if state is not None:
        return torch.device(state.device)
    if torch.cuda.is_available():
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
            return torch.device("cpu")
        local = os.environ.get("LOCAL_RANK")
        return torch.device("cuda", int(local) if local is not None else torch.cuda.current_device())
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """``dtype`` by name (float32, bfloat16, float16), or for ``"auto"``/None bfloat16 on CUDA and
    float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {dtype}")
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {list(DTYPE_CHOICES)}, got {dtype!r}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def what_ran(device: torch.device | str, dtype: torch.dtype) -> dict[str, Any]:
    """The record a tool writes beside its results: where it ran, in what precision, with what."""
    import diffusers

    import accel

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine() or "cpu"
    return {
        "device": str(device),
        "device_name": name,
        "dtype": dtype_name(dtype),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "accel": accel.__version__,
    }


def module_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of a module's first floating-point parameter (CPU / float32 if none)."""
    for param in module.parameters():
        if param.is_floating_point():
            return param.device, param.dtype
    return torch.device("cpu"), torch.float32
