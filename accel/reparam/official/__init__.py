"""Load the official RePaViT checkpoints (Xu et al., arXiv 2505.21847; github.com/Ackesnal/RePaViT).

Algorithm: recognise the upstream layout (ViT, Swin, MLP-Mixer or PoolFormer), rename its keys onto
the timm model that :func:`accel.reparam.to_repavit` converts (training-form FFNs keep
``norm1/fc1/norm2/fc2``; folded ones, ``fc1`` d->d, ``fc2`` d->a, ``fc3`` a->d, become accel's
``linear/fc1/fc2``), build that model and load strictly.

Checkpoints trained with ``--feature_norm=LayerNorm`` cannot be folded and are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from ...errors import ConfigError, UnsupportedModelError
from ..fold import folded_shell
from ..modules import ChannelIdleMlp, ResidualFFN
from ..repavit import _unwrap, check_idle_ratio, repa_blocks
from . import mixer, poolformer, swin, vit
from .layout import OfficialLayout, State

LAYOUTS: tuple[OfficialLayout, ...] = (swin.LAYOUT, mixer.LAYOUT, poolformer.LAYOUT, vit.LAYOUT)
#: Every upstream model name.
OFFICIAL_ARCHS: dict[str, Mapping[str, Any]] = {name: a for layout in LAYOUTS for name, a in layout.archs.items()}


def layout_named(arch: str) -> OfficialLayout:
    for layout in LAYOUTS:
        if arch in layout.archs:
            return layout
    raise ConfigError(f"unknown RePaViT architecture {arch!r}; known: {', '.join(OFFICIAL_ARCHS)}")


def layout_of(state: State) -> OfficialLayout:
    """The layout of an upstream state dict (the ViT one when nothing else matches)."""
    return next(layout for layout in LAYOUTS if layout.detect(state))


def build_official_model(
    arch: str | Mapping[str, Any] = "RePaViT_Base", idle_ratio: float | Sequence[float] = 0.75, **overrides: Any
) -> nn.Module:
    """A random-initialised timm model in converted RePaViT form with the layout of an upstream model.

    Args:
        arch: an upstream name (``"RePaViT_Tiny"`` ... ``"RePaViT_Huge"``, ``"RePaSwin_Tiny"`` ...
            ``"RePaSwin_Base"``, ``"RePaMlpMixer_s32"`` ... ``"RePaMlpMixer_l16"``, ``"RePaPoolformer_s12"``
            ... ``"RePaPoolformer_m48"``), or the sizes of another one as a dict (``VisionTransformer``
            kwargs; with ``"family": "swin" | "mixer" | "metaformer"`` the keys of that family's names).
        idle_ratio: the idle ratio the checkpoint was trained with (upstream default 0.75), or one per block.
        **overrides: further sizes (``num_classes``, ``img_size``, ...).
    """
    if isinstance(arch, str):
        layout, sizes = layout_named(arch), dict(layout_named(arch).archs[arch])
    else:
        sizes = dict(arch)
        family = sizes.pop("family", "vit")
        layout = next((lay for lay in LAYOUTS if lay.name == family), None)
        if layout is None:
            raise ConfigError(f"unknown family {family!r}; known: {', '.join(lay.name for lay in LAYOUTS)}")
    return layout.build({**sizes, **overrides}, idle_ratio).eval()


def _unwrap_state(source: Any) -> State:
    if isinstance(source, str):
        if source.endswith(".safetensors"):
            from safetensors.torch import load_file

            source = load_file(source)
        else:
            try:
                source = torch.load(source, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise UnsupportedModelError(
                    f"cannot read {source} with torch.load(weights_only=True) ({type(exc).__name__}); upstream "
                    "checkpoints also pickle their training arguments. In an environment you trust, save "
                    "checkpoint['model'] with safetensors and pass that file (or the dict) instead"
                ) from None
    if not isinstance(source, Mapping):
        raise UnsupportedModelError(f"expected a state dict, a checkpoint dict or a path, got {type(source).__name__}")
    if "model" in source and isinstance(source["model"], Mapping):
        source = source["model"]
    state = {}
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            continue
        state[key[len("module.") :] if key.startswith("module.") else key] = value
    return state


def _ffn_keys(name: str, keys: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int | None]:
    """Accel's keys (inside ``<block>.mlp.``) of one upstream FFN, and its active channels if folded."""
    if "norm.weight" in keys:
        raise UnsupportedModelError(
            f"{name} has a LayerNorm FFN norm (upstream --feature_norm=LayerNorm): such checkpoints cannot be "
            "structurally reparameterized; use one trained with --feature_norm=BatchNorm"
        )
    w1 = keys.get("fc1.weight")
    folded = "norm1.running_mean" not in keys and w1 is not None and w1.shape[0] == w1.shape[1]
    if not folded:
        return {("ls.scale" if k == "ls" else k): v for k, v in keys.items()}, None
    act = keys["fc2.weight"].shape[0] if "fc3.weight" in keys else 0
    if act == 0:
        return {k[len("fc1.") :]: v for k, v in keys.items() if k.startswith("fc1.")}, 0
    renames = {"fc1.": "linear.", "fc2.": "fc1.", "fc3.": "fc2."}
    return {renames[k[:4]] + k[4:]: v for k, v in keys.items()}, act


def official_to_accel_keys(
    state_dict: Mapping[str, Any], layout: OfficialLayout | None = None
) -> tuple[State, dict[str, int]]:
    """Rename an upstream state dict to accel's layout.

    Returns ``(state, folded)`` where ``folded`` maps the name of each block stored in folded form
    (``"blocks.3"``, ``"layers.2.blocks.5"``, ...) to its number of active channels.
    """
    state = _unwrap_state(state_dict)
    layout = layout or layout_of(state)
    out: State = {}
    ffns: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        where = layout.block_key(key)
        if where is None:
            out[layout.rename_global(key)] = value
            continue
        block, rest = where
        if rest.startswith(layout.ffn_prefix):
            ffns.setdefault(block, {})[rest[len(layout.ffn_prefix) :]] = value
        else:
            renamed = layout.rename_block(rest)
            if renamed is not None:
                out[f"{block}.{renamed}"] = value
    folded: dict[str, int] = {}
    for block, keys in ffns.items():
        renamed, act = _ffn_keys(block, keys)
        if act is not None:
            folded[block] = act
        out.update({f"{block}.mlp.{k}": v for k, v in renamed.items()})
    return out, folded


def load_official_checkpoint(
    source: Any,
    idle_ratio: float | Sequence[float] = 0.75,
    arch: str | Mapping[str, Any] | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """Load an upstream RePaViT checkpoint (ViT, Swin, MLP-Mixer or PoolFormer) into a converted timm model.

    Args:
        source: a state dict, an upstream checkpoint dict (``{"model": ...}``), a ``.safetensors``
            path, or a ``.pth`` path readable with ``torch.load(weights_only=True)``.
        idle_ratio: the ratio the checkpoint was trained with (upstream ``--idle_ratio``; 0.75 default),
            or the list of per-block ratios of a run with upstream ``--heuristic`` (e.g. ``linear``).
            Training-form checkpoints cannot reveal it (every channel is stored either way): pass the
            ratios the run used. Folded ones are checked against it block by block. Upstream MLP-Mixer
            always keeps ``dim`` channels active (ratio 0.75 at its 4x width).
        arch: an upstream name or sizes (see :func:`build_official_model`); inferred from the tensors if None.
        model: a model converted with :func:`accel.reparam.to_repavit` to load into (in place).

    Returns:
        The converted model in eval mode; folded blocks stay folded, others can be folded with
        :func:`accel.reparam.reparameterize`.
    """
    if not isinstance(idle_ratio, (list, tuple)):
        idle_ratio = check_idle_ratio(idle_ratio, "load_official_checkpoint idle_ratio")
    raw = _unwrap_state(source)
    layout = layout_named(arch) if isinstance(arch, str) else layout_of(raw)
    state, folded = official_to_accel_keys(raw, layout)
    if model is None:
        sizes = layout.infer(raw)
        if isinstance(arch, str):
            sizes = {**sizes, **layout.archs[arch]}
        elif arch is not None:
            sizes = {**sizes, **{k: v for k, v in dict(arch).items() if k != "family"}}
        model = layout.build(sizes, idle_ratio)
    blocks = dict(repa_blocks(model))
    for name, act_channels in folded.items():
        block = blocks.get(name)
        if block is None:
            raise UnsupportedModelError(f"the checkpoint has {name}, the model does not")
        if not isinstance(block.mlp, ChannelIdleMlp):
            continue
        if block.mlp.act_channels != act_channels and act_channels != 0:
            raise ConfigError(
                f"{name} of the checkpoint has {act_channels} active channels, idle_ratio={idle_ratio} gives "
                f"{block.mlp.act_channels}; pass the idle_ratio the checkpoint was trained with"
            )
        block.mlp = folded_shell(block.mlp)
        if act_channels == 0 and not isinstance(block.mlp, nn.Linear | nn.Conv2d):
            raise ConfigError(
                f"{name} of the checkpoint is a single linear (idle_ratio 1); idle_ratio={idle_ratio} does not match"
            )
    _fix_all_active(blocks, state, folded)
    result = _unwrap(model).load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UnsupportedModelError(
            f"the checkpoint does not match the RePaViT {layout.name} model: missing keys "
            f"{result.missing_keys[:8]}, unexpected keys {result.unexpected_keys[:8]}"
        )
    return model.eval()


def _fix_all_active(blocks: dict[str, nn.Module], state: State, folded: dict[str, int]) -> None:
    """Upstream folds idle ratio 0 into ``fc1 = I`` plus fc2/fc3; accel keeps ``x + fc2(act(fc1 x))``."""
    for name in folded:
        mlp = blocks[name].mlp
        if isinstance(mlp, ResidualFFN):
            eye = state.pop(f"{name}.mlp.linear.weight")
            eye = eye.reshape(eye.shape[0], -1)
            if not torch.allclose(eye.float(), torch.eye(eye.shape[0]), atol=1e-6):
                raise UnsupportedModelError(
                    f"{name}: a folded FFN with every channel active must have an identity linear path"
                )
            state[f"{name}.mlp.fc2.bias"] = state.pop(f"{name}.mlp.linear.bias")


__all__ = [
    "LAYOUTS",
    "OFFICIAL_ARCHS",
    "OfficialLayout",
    "build_official_model",
    "load_official_checkpoint",
    "official_to_accel_keys",
]
