"""Save and load RePaViT models (arXiv 2505.21847) as safetensors + a JSON config; never pickle.

Algorithm: the JSON names the timm architecture and each block's active channels and form
(training or folded); loading rebuilds the timm model, converts its structure, then loads the
weights strictly.

Layout of a saved model directory::

    model.safetensors   the state dict (the JSON config is also in its metadata, key "accel_repavit")
    config.json         the JSON config

:func:`read_checkpoint` and :func:`load_reparameterized` accept the directory or the ``.safetensors``
file alone.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError, UnsupportedModelError
from . import families
from .families import BlockSite
from .fold import folded_shell
from .modules import ChannelIdleMlp, is_folded
from .repavit import _unwrap, convertible, model_sites, repa_blocks, supported

FORMAT = "accel-repavit"
VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METADATA_KEY = "accel_repavit"


# ------------------------------------------------------------------------------ describing a model
def describe(model: nn.Module) -> dict[str, Any]:
    """The JSON config of a converted (training-form or folded) model."""
    inner = _unwrap(model)
    blocks = repa_blocks(inner)
    if len(blocks) != len(model_sites(inner)):
        raise UnsupportedModelError("only fully converted models can be saved: every block must be a RePaViT block")
    cls = type(inner)
    family = families.family_of(inner)
    arch = getattr(inner, "pretrained_cfg", None) or {}
    return {
        "format": FORMAT,
        "version": VERSION,
        "idle_ratio": blocks[0][1].idle_ratio,
        "act_norm": blocks[0][1].act_norm,
        "blocks": [
            {
                "act_channels": b.act_channels,
                "hidden": b.hidden_features,
                "idle_ratio": b.idle_ratio,
                "act_norm": b.act_norm,
                "folded": is_folded(b.mlp),
            }
            for _, b in blocks
        ],
        "timm_class": f"{cls.__module__}.{cls.__qualname__}",
        "architecture": arch.get("architecture"),
        "family": family.name,
        "model_kwargs": family.architecture(inner),
        "layernorm_eps": {name: m.eps for name, m in inner.named_modules() if isinstance(m, nn.LayerNorm)},
    }


# ------------------------------------------------------------------------------ saving
def save_reparameterized(model: nn.Module, path: str) -> str:
    """Save a converted or folded RePaViT model to the directory ``path`` (safetensors + config.json).

    Returns ``path``. Works for the training form too (fine-tune checkpoints); see
    :func:`load_reparameterized` for the way back.
    """
    from safetensors.torch import save_file

    config = describe(model)
    os.makedirs(path, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in _unwrap(model).state_dict().items()}
    text = json.dumps(config, indent=2, sort_keys=True)
    tmp = os.path.join(path, MODEL_FILE + ".tmp")
    save_file(state, tmp, metadata={METADATA_KEY: text})
    os.replace(tmp, os.path.join(path, MODEL_FILE))
    with open(os.path.join(path, CONFIG_FILE + ".tmp"), "w") as f:
        f.write(text + "\n")
    os.replace(os.path.join(path, CONFIG_FILE + ".tmp"), os.path.join(path, CONFIG_FILE))
    return path


# ------------------------------------------------------------------------------ loading
def _files(path: str) -> tuple[str, str | None]:
    if os.path.isdir(path):
        weights = os.path.join(path, MODEL_FILE)
        config = os.path.join(path, CONFIG_FILE)
        return weights, config if os.path.exists(config) else None
    if path.endswith(".safetensors"):
        return path, None
    raise ConfigError(
        f"a RePaViT checkpoint must be a directory holding {MODEL_FILE} or a .safetensors file, got {path!r}"
    )


def read_checkpoint(path: str, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, config)`` of a saved RePaViT model (directory or ``.safetensors`` file)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights, config_path = _files(path)
    if not os.path.exists(weights):
        raise ConfigError(f"RePaViT checkpoint not found: {weights}")
    if config_path is not None:
        with open(config_path) as f:
            config = json.load(f)
    else:
        with safe_open(weights, framework="pt") as f:
            text = (f.metadata() or {}).get(METADATA_KEY)
        if text is None:
            raise ConfigError(
                f"{weights} has no RePaViT config (metadata key {METADATA_KEY!r}) and no "
                f"{CONFIG_FILE} beside it; save models with accel.reparam.save_reparameterized"
            )
        config = json.loads(text)
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise ConfigError(
            f"{path} is not an {FORMAT} v{VERSION} checkpoint (format={config.get('format')!r}, "
            f"version={config.get('version')!r})"
        )
    return load_file(weights, device=str(device)), config


def build_base(config: dict[str, Any]) -> nn.Module:
    """A fresh (random) timm model of the architecture named in a RePaViT config."""
    import timm

    module_name, _, class_name = config["timm_class"].rpartition(".")
    if not module_name.startswith("timm."):
        raise UnsupportedModelError(
            f"cannot rebuild {config['timm_class']}: only timm classes are rebuilt; "
            "pass model= (a timm model of the same architecture) instead"
        )
    cls = getattr(importlib.import_module(module_name), class_name, None)
    family = families.family_of_class(cls) if isinstance(cls, type) else None
    if family is None:
        raise UnsupportedModelError(f"{config['timm_class']} is not a model RePaViT supports ({supported()})")
    kwargs = dict(config["model_kwargs"])
    arch = config.get("architecture")
    if arch and timm.is_model(arch):
        try:
            model = timm.create_model(arch, pretrained=False, **kwargs)
        except TypeError:  # a model function that fixes some of these kwargs itself (e.g. timm's Mixers)
            model = None
        if type(model) is cls:
            return model
    if family.name == "metaformer":
        raise UnsupportedModelError(
            f"cannot rebuild a {class_name} without its timm model name (saved: {arch!r}); pass model= "
            "(a freshly created timm model of the saved architecture)"
        )
    return cls(**kwargs)


def restructure(
    model: nn.Module, config: dict[str, Any], replace: Callable[[BlockSite, nn.Module], None] | None = None
) -> nn.Module:
    """Give an unconverted timm model the block structure described by ``config`` (weights not loaded).

    ``replace(site, new_block)`` installs a block (default: ``site.replace(new_block)``).
    """
    inner, family = convertible(model)
    saved = config.get("family", "vit")
    if saved != family.name:
        raise UnsupportedModelError(f"the checkpoint holds a {saved} model, not a {family.name} one")
    specs = config["blocks"]
    sites = family.sites(inner)
    if len(specs) != len(sites):
        raise UnsupportedModelError(f"the checkpoint has {len(specs)} blocks, the model {len(sites)}")
    for site, spec in zip(sites, specs, strict=True):
        hidden = family.hidden(site.block)
        if hidden != spec["hidden"]:
            raise UnsupportedModelError(
                f"{site.name}: the checkpoint's FFN has {spec['hidden']} hidden channels, the model's {hidden}"
            )
        block = family.convert_block(site.block, spec["idle_ratio"], spec["act_norm"], spec["act_channels"])
        if spec["folded"]:
            assert isinstance(block.mlp, ChannelIdleMlp)
            block.mlp = folded_shell(block.mlp)
        if replace is None:
            site.replace(block)
        else:
            replace(site, block)
    return model


def set_layernorm_eps(model: nn.Module, eps: dict[str, float]) -> dict[str, float]:
    """Set the eps of named LayerNorms; returns the previous values (for undoing)."""
    modules = dict(model.named_modules())
    old = {}
    for name, value in eps.items():
        module = modules.get(name)
        if isinstance(module, nn.LayerNorm) and module.eps != value:
            old[name] = module.eps
            module.eps = value
    return old


def load_reparameterized(path: str, model: nn.Module | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model saved by :func:`save_reparameterized` (training form or folded), in eval mode.

    Args:
        path: the saved directory or its ``.safetensors`` file.
        model: optional unconverted timm model of the same architecture to load into (in place); by
            default the architecture is rebuilt from the config with timm (random init, no download).
        device: where to load the tensors.
    """
    state, config = read_checkpoint(path, device)
    if model is None:
        model = build_base(config)
    model = restructure(model, config)
    set_layernorm_eps(model, config.get("layernorm_eps", {}))
    model.to(device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UnsupportedModelError(
            f"the weights in {path} do not fit the rebuilt {config['timm_class']} ({exc}); pass model= "
            "(a freshly created timm model of the saved architecture) to load_reparameterized"
        ) from None
    return model.eval()
