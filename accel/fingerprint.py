"""What identifies a denoiser that offline data (LinearAG coefficients, tuned plans) was made for.

A fingerprint is the denoiser's class, a hash of its config, and a sketch of every weight tensor:
for each parameter, in ``named_parameters()`` order, the norm of a strided sample of at most
:data:`SAMPLE` elements and two fixed random-sign projections of it (three float32 numbers per
tensor, base64 in the JSON). Casting the weights to bfloat16 or float16 moves each element by at most
0.4%, so a copy in another dtype matches; a change above about :data:`TOLERANCE` of a tensor's norm
(a fused LoRA, a fine-tune, a scaled layer) shows in that tensor's sketch.

A different class or config is a different model (data made for it is refused); different weights of
the same architecture are reported with the tensors that differ, and the caller decides whether to
warn or refuse.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import warnings
import weakref
from typing import Any

import numpy as np
import torch

#: Elements sampled (evenly strided) from each weight tensor.
SAMPLE = 4096
#: A tensor differs when its sampled norm or a projection moves by more than this fraction of the norm.
TOLERANCE = 0.01
_VERSION = "s1"
_SIGNS: torch.Tensor | None = None


def denoiser_fingerprint(denoiser: torch.nn.Module) -> dict[str, Any]:
    """What identifies the model: its class, its config, and a sketch of every weight tensor."""
    config = {k: v for k, v in dict(getattr(denoiser, "config", {}) or {}).items() if not k.startswith("_")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"class": type(denoiser).__name__, "config_sha256": digest, "weights": weights_sketch(denoiser)}


def weights_sketch(module: torch.nn.Module) -> str:
    """``"s1:<base64 float32 [tensors, 3]>"``: per parameter, the sampled norm and two projections."""
    rows = [_tensor_sketch(p) for p in module.parameters()]
    array = np.asarray(rows, dtype=np.float32).reshape(-1, 3)
    return f"{_VERSION}:{base64.b64encode(array.tobytes()).decode()}"


@torch.no_grad()
def _tensor_sketch(param: torch.Tensor) -> tuple[float, float, float]:
    global _SIGNS
    if param.device.type == "meta" or param.numel() == 0:
        return (0.0, 0.0, 0.0)
    flat = param.detach().reshape(-1)
    stride = max(1, -(-flat.numel() // SAMPLE))
    sample = flat[::stride].float()
    if _SIGNS is None:
        generator = torch.Generator().manual_seed(0)
        _SIGNS = torch.randint(0, 2, (2, SAMPLE), generator=generator).float() * 2 - 1
    signs = _SIGNS[:, : sample.numel()].to(sample.device)
    values = torch.stack([sample.norm(), *(signs @ sample)]).cpu()
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _decode(sketch: Any) -> np.ndarray | None:
    if not isinstance(sketch, str) or not sketch.startswith(f"{_VERSION}:"):
        return None
    try:
        raw = base64.b64decode(sketch[len(_VERSION) + 1 :], validate=True)
    except ValueError:
        return None
    if len(raw) % 12:
        return None
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, 3)


def check_sketch(owner: str, sketch: Any) -> None:
    """Raise ConfigError unless ``sketch`` is a weights sketch this version of accel can read."""
    from .errors import ConfigError
    from .files import brief

    if _decode(sketch) is None:
        raise ConfigError(
            f"{owner}.weights must be a weights sketch ('{_VERSION}:<base64>', from accel.fingerprint."
            f"denoiser_fingerprint); got {brief(sketch)} (made by an older accel? make it again)"
        )


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """How a model differs from the one data was made for: ``kind`` is ``"architecture"`` (another
    class or config: the data does not fit) or ``"weights"`` (same architecture, other weights)."""

    kind: str
    message: str
    tensors: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message


def fingerprint_mismatch(
    made_for: dict[str, Any], found: dict[str, Any], model: torch.nn.Module | None = None
) -> Mismatch | None:
    """None if ``found`` is the model ``made_for`` describes, else what differs. With ``model`` (the one
    ``found`` was taken from), the differing tensors are named."""
    if made_for.get("class") != found["class"] or made_for.get("config_sha256") != found["config_sha256"]:
        return Mismatch(
            "architecture", f"it was made for a {made_for.get('class')} with another config than this {found['class']}"
        )
    old, new = _decode(made_for.get("weights")), _decode(found["weights"])
    if old is None or new is None or old.shape != new.shape:
        return Mismatch("weights", f"its weights record cannot be compared with this {found['class']}'s")
    scale = np.maximum(np.abs(old[:, 0]), 1e-12)[:, None]
    differs = np.flatnonzero((np.abs(new - old) > TOLERANCE * scale).any(axis=1))
    if not len(differs):
        return None
    names = [name for name, _ in model.named_parameters()] if model is not None else []
    named = tuple(names[i] for i in differs if i < len(names)) or tuple(f"tensor {i}" for i in differs)
    shown = ", ".join(named[:3]) + (", ..." if len(named) > 3 else "")
    return Mismatch(
        "weights",
        f"its weights differ from this {found['class']}'s in {len(differs)} of {len(old)} tensors ({shown}): "
        "a fused LoRA, a fine-tune or another checkpoint",
        named,
    )


_WARNED: weakref.WeakKeyDictionary[torch.nn.Module, set[str]] = weakref.WeakKeyDictionary()


def warn_once(model: torch.nn.Module, key: str, message: str) -> None:
    """One ``UserWarning`` per model and ``key`` (a plan and its LinearAG coefficients that see the same
    difference of weights warn once)."""
    seen = _WARNED.setdefault(model, set())
    if key not in seen:
        seen.add(key)
        warnings.warn(message, UserWarning, stacklevel=3)
