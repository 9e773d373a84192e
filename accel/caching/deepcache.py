"""DeepCache for U-Nets (Ma, Fang, Wang, CVPR 2024, arXiv 2312.00858).

Algorithm: every ``interval`` steps the whole U-Net runs and the outputs of every layer deeper than
the chosen skip branch are cached; on the steps in between only the shallow layers run, and each
deeper layer returns its cached output (or, with ``forecast_order`` k > 0, the degree-k polynomial
through its last k + 1 computed outputs, TaylorSeer-style), so the up path combines cached deep
features with fresh skip connections from the shallow down layers.

Implemented as diffusers ``ModelHook``\\ s on the deep layers of ``UNet2DConditionModel`` (SD 1.x/2.x,
SDXL), driven by accel's denoising context: steps are the sampler's steps (Heun and img2img
strength are counted right), state is per CFG branch and resets with every pipeline call.
ControlNet residuals work: they are added to the fresh shallow skips every step and reach the
deep path on full steps. T2I-Adapters are refused (they add in place to deep features).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import torch.nn as nn
from diffusers.hooks import ModelHook
from diffusers.hooks.hooks import StateManager

from ..compiling import DecidingHook, eager
from ..config import PluginConfig, check_choice, check_int
from ..context import CallInfo, DenoisingContext
from ..errors import ConfigError, UnsupportedModelError
from ..facts import Field, Gene, PluginFacts
from ..plugin import Plugin, register_plugin
from ..tensors import fit_batch, leading_batch
from .forecast import CachedOutput, CacheMemory, check_forecast, position

if TYPE_CHECKING:
    from ..session import DenoiserSession

SCHEDULES = ("uniform", "quadratic")


@dataclasses.dataclass(frozen=True)
class DeepCacheConfig(PluginConfig):
    """DeepCache settings.

    Args:
        interval: N; one full U-Net evaluation every N steps (1 = no caching, identical to baseline).
        branch: the skip branch kept live, numbered as the official DeepCache package numbers its
            ``cache_branch_id``: on cached steps every layer that produces or consumes skip ``S_0..S_b``
            runs (``S_0`` is ``conv_in``'s output). 0 is the shallowest (fastest, lowest quality):
            only ``conv_in`` and the last up layer run. The allowed range depends on the U-Net
            (SD 1.5: 0-11) and is checked when attached. The default, 1, also keeps the first down
            layer and its up partner. (Before accel 0.2 branches were numbered one lower.)
        schedule: ``"uniform"`` (full steps every N) or ``"quadratic"`` (the same number of full
            steps, spaced quadratically so they are denser early, where features change fastest).
        full_steps_start: the first k steps are always full.
        full_steps_end: the last k steps are always full.
        full_step_mask: an explicit per-step schedule (True = full step) overriding the above; its
            length must equal the number of steps run (e.g. from ``accel search-cache``).
        forecast_order: on cached steps, 0 reuses the deep features of the last full step; 1 or 2
            extrapolates them with the line or parabola through the last 2 or 3 full steps.
        forecast_variable: what the extrapolation is a function of: ``"step"`` (the step index) or
            ``"timestep"`` (the timestep the U-Net receives).
        forecast_steps: a per-step forecast order overriding ``forecast_order`` (e.g. from ``accel
            search-cache``); entries of full steps are ignored. Its length must equal the steps run.
    """

    short_prefix = "deepcache"
    interval: int = 3
    branch: int = 1
    schedule: str = "uniform"
    full_steps_start: int = 0
    full_steps_end: int = 0
    full_step_mask: tuple[bool, ...] | None = None
    forecast_order: int = 0
    forecast_variable: str = "step"
    forecast_steps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_forecast("DeepCacheConfig", self.forecast_order, self.forecast_variable)
        if self.forecast_steps is not None:
            if not isinstance(self.forecast_steps, tuple) or not self.forecast_steps:
                raise ConfigError("DeepCacheConfig.forecast_steps must be a non-empty tuple of orders or None")
            for order in self.forecast_steps:
                check_forecast("DeepCacheConfig", order, self.forecast_variable)
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

    def forecast_orders(self, num_steps: int) -> list[int]:
        """Per step, the forecast order used if the step is cached."""
        if self.forecast_steps is None:
            return [self.forecast_order] * num_steps
        if len(self.forecast_steps) != num_steps:
            raise ConfigError(
                f"DeepCacheConfig.forecast_steps has {len(self.forecast_steps)} entries but the pipeline runs "
                f"{num_steps} steps"
            )
        return list(self.forecast_steps)


_BRANCH = DeepCacheConfig().branch  # the demo's presets keep the library's default skip branch

FACTS = PluginFacts(
    key="deepcache",
    title="DeepCache",
    blurb="U-Nets: reuse the deep U-Net features for N-1 of every N steps; only the shallow branch runs in between.",
    fields=(
        Field("interval", "interval N", "int", 1, 10, 1, info="a full U-Net step every N steps; 1 = off"),
        Field("branch", "branch", "int", 0, 11, 1, info="live skip branch (official numbering); 0 = fastest"),
        Field("schedule", "schedule", "choice", choices=("uniform", "quadratic")),
        Field("full_steps_start", "full steps at start", "int", 0, 20, 1),
        Field("full_steps_end", "full steps at end", "int", 0, 20, 1),
    ),
    presets={
        "safe": dict(interval=2, branch=_BRANCH, schedule="uniform", full_steps_start=1, full_steps_end=1),
        "balanced": dict(interval=3, branch=_BRANCH, schedule="uniform", full_steps_start=0, full_steps_end=0),
        "fast": dict(interval=5, branch=_BRANCH, schedule="quadratic", full_steps_start=0, full_steps_end=0),
    },
    identity=dict(interval=1, branch=_BRANCH, schedule="uniform", full_steps_start=0, full_steps_end=0),
    genes=(
        Gene("interval", (2, 3, 4, 5, 6, 8)),
        Gene("branch", (0, 1, 2)),
        Gene("schedule", ("uniform", "quadratic")),
        Gene("forecast_order", (0, 1, 2)),
    ),
    build=lambda k, steps: DeepCacheConfig(
        interval=k["interval"], branch=k["branch"], schedule=k["schedule"], forecast_order=k["forecast_order"]
    ),
    sweep={"sd-digits": [{"type": "DeepCacheConfig", "interval": n} for n in (2, 3, 5)]},
    order=0,
)


@dataclasses.dataclass
class DeepCacheState:
    """What one generation of DeepCache counts; reset at the start of every generation."""

    steps_seen: dict[int, bool] = dataclasses.field(default_factory=dict)  # step -> full U-Net ran
    skipped_layer_calls: int = 0
    forecast_calls: int = 0
    memory: CacheMemory = dataclasses.field(default_factory=CacheMemory)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


class DeepCacheSteps:
    """Which steps run the whole U-Net, and each cached step's forecast order (made once per step count)."""

    def __init__(self, config: DeepCacheConfig, state: DeepCacheState) -> None:
        self.config = config
        self.state = state
        self._full: dict[int, list[bool]] = {}  # step count -> per step, full U-Net
        self._orders: dict[int, list[int]] = {}  # step count -> per step, forecast order

    def is_full_step(self, info: CallInfo) -> bool:
        step, total = info.require_steps("DeepCache")
        if total not in self._full:
            self._full[total] = self.config.full_steps(total)
        full = self._full[total][step]
        self.state.steps_seen.setdefault(step, full)
        return full

    def order_at(self, info: CallInfo) -> int:
        step, total = info.require_steps("DeepCache")
        if total not in self._orders:
            self._orders[total] = self.config.forecast_orders(total)
        return self._orders[total][step]

    @property
    def history(self) -> int:
        """Computed outputs each deep layer keeps: the newest, plus the forecast's extra points."""
        orders = self.config.forecast_steps or (self.config.forecast_order,)
        return 1 + max(orders)


@dataclasses.dataclass
class _Decision:
    info: CallInfo | None
    output: Any
    args: tuple
    kwargs: dict
    x: float
    batch: int


class DeepLayerHook(DecidingHook):
    """On a deep U-Net layer: compute and cache on full steps, return the cache otherwise."""

    _is_stateful = True

    def __init__(
        self, context: DenoisingContext, steps: DeepCacheSteps, counts: DeepCacheState, variable: str
    ) -> None:
        super().__init__(context)
        self.steps = steps
        self.counts = counts
        self.variable = variable
        self.state = StateManager(CachedOutput)

    @eager
    def _decide(self, args: tuple, kwargs: dict) -> _Decision:
        """The reused or forecast output on a cached step (run the layer on full steps)."""
        info = self.context.current
        state = self.state.get_state()
        batch = leading_batch(args) or leading_batch(kwargs)
        x = position(info, self.variable) if info is not None else 0.0
        if info is not None and not self.steps.is_full_step(info) and state.output is not None:
            order = self.steps.order_at(info)
            cached = fit_batch(state.estimate(x, order), state.batch, batch, info)
            if cached is not None:
                self.counts.skipped_layer_calls += 1
                self.counts.forecast_calls += order > 0 and len(state.points) > 1
                return _Decision(info, cached, args, kwargs, x, batch)
        return _Decision(info, None, args, kwargs, x, batch)

    @eager
    def _record(self, decision: _Decision, output: Any) -> Any:
        state = self.state.get_state()
        state.record(decision.x, output, decision.batch, self.steps.history, decision.info)
        self.counts.memory.note((id(self), self.state.context.name), state)
        return output

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.state.reset()
        return module


class _RefuseAdapterHook(ModelHook):
    """On the U-Net root: T2I-Adapter residuals are added in place to deep features, which would corrupt the cache."""

    @eager
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
    facts = FACTS

    def __init__(self, config: DeepCacheConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self.state = DeepCacheState()
        self.steps = DeepCacheSteps(config, self.state)
        self.deep_layers: list[str] = []

    def attach(self) -> None:
        unet = self.session.denoiser
        layout = self.session.adapter.skip_layout(unet)
        if self.config.branch >= layout.num_skips:
            raise ConfigError(
                f"DeepCacheConfig.branch must be in [0, {layout.num_skips - 1}] for this U-Net "
                f"(it has {layout.num_skips} skip branches), got {self.config.branch}"
            )
        skip = self.config.branch
        deep = [u for u in layout.down if u.skip > skip] + [u for u in layout.up if u.skip > skip]
        deep += [u for u in layout.upsamplers if u.skip > skip]
        modules: list[tuple[str, nn.Module]] = [(f"{u.name}.{i}", m) for u in deep for i, m in enumerate(u.modules)]
        if layout.mid is not None:
            modules.append(("mid_block", layout.mid))
        for _name, module in modules:
            hook = DeepLayerHook(self.session.context, self.steps, self.state, self.config.forecast_variable)
            self.session.register_hook(module, hook, self.hook_name())
        self.deep_layers = [name for name, _ in modules]
        self.session.register_hook(unet, _RefuseAdapterHook(), self.hook_name("guard"))

    def on_generation_start(self) -> None:
        self.state.reset()

    def stats(self) -> dict[str, Any]:
        counts = self.state
        steps = [counts.steps_seen[s] for s in sorted(counts.steps_seen)]
        return {
            "interval": self.config.interval,
            "branch": self.config.branch,
            "full_steps": sum(steps),
            "cached_steps": len(steps) - sum(steps),
            "schedule": step_pattern(steps),
            "deep_layers": len(self.deep_layers),
            "skipped_layer_calls": counts.skipped_layer_calls,
            "forecast_order": self.config.forecast_order,
            "forecast_calls": counts.forecast_calls,
            "cache_bytes": counts.memory.peak_cache_bytes,
            "forecast_bytes": counts.memory.peak_forecast_bytes,
        }


def step_pattern(full: list[bool]) -> str:
    """A compact picture of a per-step schedule: ``F`` computed, ``.`` cached."""
    return "".join("F" if f else "." for f in full)


def apply_deep_cache(module: Any, config: DeepCacheConfig | None = None, **kwargs: Any):
    """diffusers-style entry point: ``apply_deep_cache(pipe_or_unet, DeepCacheConfig(...))``."""
    from ..api import apply

    return apply(module, config or DeepCacheConfig(), **kwargs)
