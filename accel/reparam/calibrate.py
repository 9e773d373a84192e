"""BatchNorm calibration for RePaViT conversions (Xu et al., arXiv 2505.21847), and batch iteration.

Algorithm: reset every BatchNorm's running statistics and re-estimate them as the exact average
over a few batches of data, with the rest of the model in eval mode and no gradient.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError, InvalidInputError

Batch = tuple[torch.Tensor, "torch.Tensor | None"]


def iterate_batches(
    data: Any, batch_size: int = 64, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[Batch]:
    """``(images, labels or None)`` batches from a tensor, an ``(images, labels)`` pair or an iterable.

    Tensors (and pairs of tensors) are split into batches of ``batch_size`` (shuffled with
    ``generator`` if ``shuffle``); an iterable (e.g. a ``DataLoader``) is used as it is and may yield
    tensors, ``(images, labels)`` pairs or dicts with ``"images"``/``"pixel_values"`` and ``"labels"``.
    """
    if isinstance(data, torch.Tensor) or (
        isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data)
    ):
        images, labels = (data, None) if isinstance(data, torch.Tensor) else (data[0], data[1])
        if labels is not None and len(labels) != len(images):
            raise ConfigError(f"{len(images)} images but {len(labels)} labels")
        order = torch.randperm(len(images), generator=generator) if shuffle else torch.arange(len(images))
        for start in range(0, len(images), batch_size):
            idx = order[start : start + batch_size]
            yield images[idx], (labels[idx] if labels is not None else None)
        return
    if not isinstance(data, Iterable):
        raise InvalidInputError(
            f"expected images (a tensor), an (images, labels) pair or an iterable of batches, "
            f"got {type(data).__name__}"
        )
    for item in data:
        yield split_batch(item)


def split_batch(item: Any) -> Batch:
    """``(images, labels or None)`` of one batch from a loader."""
    if isinstance(item, torch.Tensor):
        return item, None
    if isinstance(item, dict):
        images = item.get("images", item.get("pixel_values"))
        if images is None:
            raise ConfigError(f"batch dict has no 'images' or 'pixel_values' (keys: {sorted(item)})")
        return images, item.get("labels")
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        labels = item[1] if len(item) > 1 and isinstance(item[1], torch.Tensor) else None
        return item[0], labels
    raise InvalidInputError(f"cannot read a batch of type {type(item).__name__}")


def num_batches(data: Any, batch_size: int) -> int | None:
    """How many batches :func:`iterate_batches` yields, if known."""
    if isinstance(data, torch.Tensor):
        return -(-len(data) // batch_size)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        return -(-len(data[0]) // batch_size)
    try:
        return len(data)
    except TypeError:
        return None


@torch.no_grad()
def calibrate_batchnorm(
    model: nn.Module,
    data: Any,
    max_batches: int | None = 20,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics of ``model`` on ``data`` (in place).

    Use it right after :func:`accel.reparam.to_repavit`, whose BatchNorms start with placeholder
    statistics; the model ends in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    device = device or next(model.parameters()).device
    model.eval()
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    try:
        for i, (images, _) in enumerate(iterate_batches(data, batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            model(images.to(device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()
    return model
