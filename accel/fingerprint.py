"""What identifies a denoiser that offline data (LinearAG coefficients, tuned plans) was made for.

A fingerprint is the denoiser's class, a hash of its config and a weight checksum; data made for
one model is refused on another, with a message saying what differs.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import torch


def denoiser_fingerprint(denoiser: torch.nn.Module) -> dict[str, Any]:
    """What identifies the model: its class, its config, and a weight checksum."""
    config = {k: v for k, v in dict(getattr(denoiser, "config", {}) or {}).items() if not k.startswith("_")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    first = next(iter(denoiser.parameters()), None)
    checksum = float(first.detach().double().abs().sum()) if first is not None else 0.0
    return {"class": type(denoiser).__name__, "config_sha256": digest, "weight_checksum": checksum}


def fingerprint_mismatch(made_for: dict[str, Any], found: dict[str, Any]) -> str | None:
    """None if ``found`` is the model ``made_for`` describes, else what differs (for an error message)."""
    if made_for.get("class") != found["class"] or made_for.get("config_sha256") != found["config_sha256"]:
        return f"it was made for a {made_for.get('class')} with another config than this {found['class']}"
    if not math.isclose(made_for.get("weight_checksum", math.nan), found["weight_checksum"], rel_tol=1e-3):
        return f"it was made for other weights of this {found['class']} architecture"
    return None
