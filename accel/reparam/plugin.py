"""``accel.RePaViTConfig``: RePaViT FFN reparameterization as an accel plugin (arXiv 2505.21847).

Algorithm: swap every timm ViT block for a channel-idle RePaViT block (BatchNorm FFN, the first
``ceil(h (1 - idle_ratio))`` hidden channels activated), optionally load fine-tuned weights, and
fold each FFN into ``W_lin x + b_lin + W2[:, :a] act(W1[:a] x + b1[:a])``.

``accel.remove`` puts the original blocks (with their LayerNorm and ``Mlp``) back and restores any
weight a checkpoint overwrote, so the model's outputs are bit-identical to before.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn as nn

from ..config import PluginConfig, check_float
from ..errors import ConfigError, UnsupportedModelError
from ..plugin import Plugin, register_plugin
from .families import BlockSite, Family
from .fold import fold_mlp
from .modules import ChannelIdleMlp, ffn_macs_per_token, is_folded
from .repavit import act_channels_for, convertible
from .serialization import read_checkpoint, restructure, set_layernorm_eps

if TYPE_CHECKING:
    from ..api import AccelHandle
    from ..session import DenoiserSession


@dataclasses.dataclass(frozen=True)
class RePaViTConfig(PluginConfig):
    """RePaViT (Xu et al., ICML 2025, arXiv 2505.21847) for timm ViT, Swin, MLP-Mixer and PoolFormer models.

    Not training-free for pretrained LayerNorm ViTs: without a ``checkpoint`` of a converted,
    fine-tuned model the outputs change (see ``docs/repavit.md`` for the recipe).

    Attributes:
        idle_ratio: fraction of FFN hidden channels left without activation, in [0, 1].
        reparameterize: fold the FFNs into Linears (inference speed-up); False keeps the trainable
            channel-idle form.
        checkpoint: None, or a RePaViT model saved by ``accel.reparam.save_reparameterized`` (its
            directory or ``.safetensors`` file), e.g. the student of ``accel reparam finetune``.
        act_norm: BatchNorm after the activation, as in the paper (ignored with a checkpoint,
            which records its own).
    """

    short_prefix: ClassVar[str] = "repavit"
    idle_ratio: float = 0.75
    reparameterize: bool = True
    checkpoint: str | None = None
    act_norm: bool = True

    def __post_init__(self) -> None:
        check_float("RePaViTConfig", "idle_ratio", self.idle_ratio, 0.0, 1.0)
        for name in ("reparameterize", "act_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"RePaViTConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.checkpoint is not None and not (
            isinstance(self.checkpoint, str)
            and self.checkpoint
            and (
                self.checkpoint.endswith(".safetensors")
                or not os.path.splitext(self.checkpoint)[1]
                or os.path.isdir(self.checkpoint)
            )
        ):
            raise ConfigError(
                "RePaViTConfig.checkpoint must be None or the path of a model saved by "
                "accel.reparam.save_reparameterized (a directory or a .safetensors file), "
                f"got {self.checkpoint!r}"
            )


@register_plugin
class RePaViTPlugin(Plugin):
    """Converts (and folds) the FFNs of a timm ViT, Swin, MLP-Mixer or PoolFormer in place; every change is
    undone by ``remove``."""

    config_cls = RePaViTConfig
    name = "repavit"
    kinds = frozenset({"vit"})
    claims = frozenset({"ffn_structure"})

    def __init__(self, config: RePaViTConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self._stats: dict[str, Any] = {}

    def attach(self) -> None:
        cfg: RePaViTConfig = self.config  # type: ignore[assignment]
        model, family = convertible(self.session.denoiser)
        before = sum(ffn_macs_per_token(family.ffn(site.block)) for site in family.sites(model))
        state, layout = self._layout(model, family, cfg)

        def replace(site: BlockSite, new: nn.Module) -> None:
            old = site.block
            site.replace(new)
            self.session.add_restorer(lambda: site.replace(old))

        restructure(model, layout, replace)
        blocks = [site.block for site in family.sites(model)]
        if state is not None:
            self._load(model, blocks, state, layout)
        if cfg.reparameterize:
            for block in blocks:
                if isinstance(block.mlp, ChannelIdleMlp):
                    block.mlp = fold_mlp(block.mlp)
        after = sum(ffn_macs_per_token(block.mlp) for block in blocks)
        self._stats = {
            "family": family.name,
            "blocks_converted": len(blocks),
            "idle_ratio": cfg.idle_ratio,
            "active_channels": [block.act_channels for block in blocks],
            "reparameterized": all(is_folded(block.mlp) for block in blocks),
            "checkpoint": cfg.checkpoint,
            "ffn_macs_per_token_before": before,
            "ffn_macs_per_token_after": after,
            "ffn_mac_ratio": after / before,
        }

    def _layout(
        self, model: nn.Module, family: Family, cfg: RePaViTConfig
    ) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
        if cfg.checkpoint is None:
            warnings.warn(
                "RePaViTConfig without a checkpoint changes the model's outputs (BatchNorm FFNs, idle "
                "channels): fine-tune the converted model first (accel reparam finetune) and pass "
                "checkpoint=...",
                stacklevel=4,
            )
            hidden = [family.hidden(site.block) for site in family.sites(model)]
            return None, {
                "family": family.name,
                "blocks": [
                    {
                        "hidden": h,
                        "idle_ratio": cfg.idle_ratio,
                        "act_norm": cfg.act_norm,
                        "act_channels": act_channels_for(h, cfg.idle_ratio),
                        "folded": False,
                    }
                    for h in hidden
                ],
            }
        if not os.path.exists(cfg.checkpoint):
            raise ConfigError(f"RePaViTConfig.checkpoint {cfg.checkpoint!r} does not exist")
        device = next(model.parameters()).device
        state, layout = read_checkpoint(cfg.checkpoint, device)
        if not math.isclose(layout["idle_ratio"], cfg.idle_ratio, abs_tol=1e-9):
            raise ConfigError(
                f"RePaViTConfig.idle_ratio={cfg.idle_ratio} but {cfg.checkpoint} was trained with "
                f"idle_ratio={layout['idle_ratio']}; use the checkpoint's value"
            )
        if not cfg.reparameterize and any(b["folded"] for b in layout["blocks"]):
            raise ConfigError(f"{cfg.checkpoint} holds a folded model; use RePaViTConfig(reparameterize=True)")
        return state, layout

    def _load(
        self, model: nn.Module, blocks: list[nn.Module], state: dict[str, torch.Tensor], layout: dict[str, Any]
    ) -> None:
        """Load a checkpoint, first backing up every shared tensor it overwrites (restored on remove)."""
        new = {id(t) for block in blocks for t in [*block.mlp.parameters(), *block.mlp.buffers()]}
        live = {k: v for k, v in model.state_dict(keep_vars=True).items() if id(v) not in new}
        backup = {k: v.detach().clone() for k, v in live.items()}

        def restore_weights() -> None:
            with torch.no_grad():
                for key, tensor in live.items():
                    tensor.copy_(backup[key])

        self.session.add_restorer(restore_weights)
        old_eps = set_layernorm_eps(model, layout.get("layernorm_eps", {}))
        self.session.add_restorer(lambda: set_layernorm_eps(model, old_eps))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise UnsupportedModelError(
                f"{self.config.checkpoint} does not fit this {type(model).__name__}: {exc}"
            ) from None

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)


def apply_repavit(model: nn.Module, config: RePaViTConfig | None = None, **kwargs: Any) -> AccelHandle:
    """diffusers-style alias of ``accel.apply(model, RePaViTConfig(...))``; undo with ``accel.remove(model)``."""
    from ..api import apply

    if config is not None and kwargs:
        raise ConfigError("pass either a RePaViTConfig or its fields as keyword arguments, not both")
    return apply(model, config if config is not None else RePaViTConfig(**kwargs))


__all__ = ["RePaViTConfig", "RePaViTPlugin", "apply_repavit"]
