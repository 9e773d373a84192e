"""What an upstream RePaViT checkpoint layout is (github.com/Ackesnal/RePaViT; arXiv 2505.21847).

Each upstream model file (``repavit.py``, ``repaswin.py``, ``repamlpmixer.py``, ``repapoolformer.py``)
stores its blocks under its own names; an :class:`OfficialLayout` says how those names map onto the
timm model that :mod:`accel.reparam` converts, and how to build that model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

State = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class OfficialLayout:
    """One upstream model family's checkpoint layout.

    Attributes:
        name: the accel family (``"vit"``, ``"swin"``, ``"mixer"``, ``"metaformer"``).
        archs: upstream model names -> sizes (``build`` kwargs).
        detect: whether a state dict has this layout.
        block_key: upstream key -> ``(accel block name, key inside the block)``, or None for a key
            outside the blocks.
        ffn_prefix: the upstream FFN's name inside a block (``"mlp."``; ``"mlp_channels."`` in Mixer).
        rename_block: a non-FFN key inside a block -> accel's (None drops it, e.g. upstream's
            persistent ``attn_mask`` buffers).
        rename_global: a key outside the blocks -> accel's.
        infer: ``build`` kwargs read from the tensors of a (renamed) state dict.
        build: ``(kwargs, idle_ratio) -> converted timm model``, random-initialised.
    """

    name: str
    archs: Mapping[str, Mapping[str, Any]]
    detect: Callable[[State], bool]
    block_key: Callable[[str], tuple[str, str] | None]
    ffn_prefix: str
    rename_block: Callable[[str], str | None]
    rename_global: Callable[[str], str]
    infer: Callable[[State], dict[str, Any]]
    build: Callable[[Mapping[str, Any], float | Sequence[float]], nn.Module]
