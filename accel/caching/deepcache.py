"""DeepCache for U-Nets (Ma, Fang, Wang, CVPR 2024, arXiv 2312.00858).

Algorithm: every ``interval`` steps the whole U-Net runs and the outputs of every layer deeper than
the chosen skip branch are cached; on the steps in between only the shallow layers run, and each
deeper layer returns its cached output, so the up path combines cached deep features with fresh
skip connections from the shallow down layers.

Implemented as diffusers ``ModelHook``\\ s on the deep layers of ``UNet2DConditionModel`` (SD 1.x/2.x,
SDXL), driven by accel's denoising context: steps are the sampler's steps (Heun and img2img
strength are counted right), state is per CFG branch and resets with every pipeline call.
ControlNet residuals work: they are added to the fresh shallow skips every step and reach the
deep path on full steps. T2I-Adapters are refused (they add in place to deep features).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch.nn as nn
from diffusers.hooks import ModelHook
from diffusers.hooks.hooks import StateManager

from ..config import PluginConfig, check_choice, check_int
from ..errors import ConfigError, UnsupportedModelError
from ..plugin import Plugin, register_plugin
from ..tensors import fit_batch, leading_batch, tensor_bytes
from .common import CachedOutput, step_pattern

SCHEDULES = ("uniform", "quadratic")


@dataclasses.dataclass(frozen=True)
class DeepCacheConfig(PluginConfig):
    """DeepCache settings.

    Args:
        interval: N; one full U-Net evaluation every N steps (1 = no caching, identical to baseline).
        branch: skip branch kept live; 0 is the shallowest (fastest, lowest quality): ``conv_in`` and
            the first down layer with their up partners. The allowed range depends on the U-Net
            (SD 1.5: 0-11) and is checked when attached. The official DeepCache package counts one
            lower: its branch ``b + 1`` is accel's ``b``.
        schedule: ``"uniform"`` (full steps every N) or ``"quadratic"`` (the same number of full
            steps, spaced quadratically so they are denser early, where features change fastest).
        full_steps_start: the first k steps are always full.
        full_steps_end: the last k steps are always full.
        full_step_mask: an explicit per-step schedule (True = full step) overriding the above; its
            length must equal the number of steps run (e.g. from ``accel search-cache``).
    """

    short_prefix = "deepcache"
    interval: int = 3
    branch: int = 0
    schedule: str = "uniform"
    full_steps_start: int = 0
    full_steps_end: int = 0
    full_step_mask: tuple[bool, ...] | None = None

    def __post_init__(self) -> None:
        check_int("DeepCacheConfig", "interval", self.interval, 1, 1000)
        check_int("DeepCacheConfig", "branch", self.branch, 0, 1000)
        check_choice("DeepCacheConfig", "schedule", self.schedule, SCHEDULES)
        check_int("DeepCacheConfig", "full_steps_start", self.full_steps_start, 0, 10000)
        check_int("DeepCacheConfig", "full_steps_end", self.full_steps_end, 0, 10000)
        if self.full_step_mask is not None:
            if not isinstance(self.full_step_mask, tuple) or not all(isinstance(b, bool) for b in self.full_step_mask):
                raise ConfigError(
                    "DeepCacheConfig.full_step_mask must be a tuple of booleans (True = full step) or None"
                )
            if not self.full_step_mask or not self.full_step_mask[0]:
                raise ConfigError("DeepCacheConfig.full_step_mask must start with a full step (True)")

    def full_steps(self, num_steps: int) -> list[bool]:
        """Per step, whether the whole U-Net runs."""
        if self.full_step_mask is not None:
            if len(self.full_step_mask) != num_steps:
                raise ConfigError(
                    f"DeepCacheConfig.full_step_mask has {len(self.full_step_mask)} entries but the "
                    f"pipeline runs {num_steps} steps"
                )
            return list(self.full_step_mask)
        full = [False] * num_steps
        if self.schedule == "uniform":
            for s in range(0, num_steps, self.interval):
                full[s] = True
        else:
            count = math.ceil(num_steps / self.interval)
            for k in range(count):
                full[min(num_steps - 1, round(num_steps * (k / count) ** 2))] = True
        for s in range(min(self.full_steps_start, num_steps)):
            full[s] = True
        for s in range(max(0, num_steps - self.full_steps_end), num_steps):
            full[s] = True
        full[0] = True
        return full


class DeepLayerHook(ModelHook):
    """On a deep U-Net layer: compute and cache on full steps, return the cache otherwise."""

    _is_stateful = True

    def __init__(self, plugin: DeepCachePlugin) -> None:
        super().__init__()
        self.plugin = plugin
        self.state = StateManager(CachedOutput)

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        info = self.plugin.session.context.current
        state = self.state.get_state()
        batch = leading_batch(args) or leading_batch(kwargs)
        if info is not None and not self.plugin.is_full_step(info) and state.output is not None:
            cached = fit_batch(state.output, state.batch, batch, info)
            if cached is not None:
                self.plugin.skipped_layer_calls += 1
                return cached
        output = self.fn_ref.original_forward(*args, **kwargs)
        state.output, state.batch = output, batch
        self.plugin.note_cache_bytes((id(self), self.state.context.name), output)
        return output

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.state.reset()
        return module


class _RefuseAdapterHook(ModelHook):
    """On the U-Net root: T2I-Adapter residuals are added in place to deep features, which would corrupt the cache."""

    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        if kwargs.get("down_intrablock_additional_residuals") is not None:
            raise UnsupportedModelError(
                "DeepCache does not support T2I-Adapter residuals "
                "(down_intrablock_additional_residuals); remove DeepCache or the adapter"
            )
        return args, kwargs


@register_plugin
class DeepCachePlugin(Plugin):
    config_cls = DeepCacheConfig
    name = "deep_cache"
    kinds = frozenset({"unet"})
    claims = frozenset({"block_outputs"})

    def __init__(self, config: DeepCacheConfig, session: Any) -> None:
        super().__init__(config, session)
        self._schedule: dict[int, list[bool]] = {}
        self.deep_layers: list[str] = []
        self.on_generation_start()

    def attach(self) -> None:
        unet = self.session.denoiser
        layout = self.session.adapter.skip_layout(unet)
        branches = layout.num_skips - 1
        if self.config.branch >= branches:
            raise ConfigError(
                f"DeepCacheConfig.branch must be in [0, {branches - 1}] for this U-Net "
                f"(it has {branches} skip branches), got {self.config.branch}"
            )
        skip = self.config.branch + 1
        deep = [u for u in layout.down if u.skip > skip] + [u for u in layout.up if u.skip > skip]
        deep += [u for u in layout.upsamplers if u.skip > skip]
        modules: list[tuple[str, nn.Module]] = [(f"{u.name}.{i}", m) for u in deep for i, m in enumerate(u.modules)]
        if layout.mid is not None:
            modules.append(("mid_block", layout.mid))
        for _name, module in modules:
            self.session.register_hook(module, DeepLayerHook(self), self.hook_name())
        self.deep_layers = [name for name, _ in modules]
        self.session.register_hook(unet, _RefuseAdapterHook(), self.hook_name("guard"))

    def is_full_step(self, info: Any) -> bool:
        step, total = info.require_steps("DeepCache")
        if total not in self._schedule:
            self._schedule[total] = self.config.full_steps(total)
        full = self._schedule[total][step]
        if step not in self.steps_seen:
            self.steps_seen[step] = full
        return full

    def note_cache_bytes(self, key: Any, output: Any) -> None:
        self._bytes[key] = tensor_bytes(output)
        self.peak_cache_bytes = max(self.peak_cache_bytes, sum(self._bytes.values()))

    def on_generation_start(self) -> None:
        self.steps_seen: dict[int, bool] = {}
        self.skipped_layer_calls = 0
        self._bytes: dict[Any, int] = {}
        self.peak_cache_bytes = 0

    def stats(self) -> dict[str, Any]:
        steps = [self.steps_seen[s] for s in sorted(self.steps_seen)]
        return {
            "interval": self.config.interval,
            "branch": self.config.branch,
            "full_steps": sum(steps),
            "cached_steps": len(steps) - sum(steps),
            "schedule": step_pattern(steps),
            "deep_layers": len(self.deep_layers),
            "skipped_layer_calls": self.skipped_layer_calls,
            "cache_bytes": self.peak_cache_bytes,
        }


def apply_deep_cache(module: Any, config: DeepCacheConfig | None = None, **kwargs: Any):
    """diffusers-style entry point: ``apply_deep_cache(pipe_or_unet, DeepCacheConfig(...))``."""
    from ..api import apply

    return apply(module, config or DeepCacheConfig(), **kwargs)
