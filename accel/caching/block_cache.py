"""Schedule-driven component caching for diffusion transformers (FORA arXiv 2407.01425; ECAD arXiv 2506.15682).

Algorithm: a boolean schedule ``recompute[step, block, component]`` decides, for every attention,
cross-attention and feed-forward module of every block, whether it runs at this step or returns
the output it produced the last time it ran, or (``forecast_order`` k > 0, or a per-unit order in the
schedule) the degree-k polynomial through its last k + 1 computed outputs, TaylorSeer-style; the
block's own gates and residuals still apply.

Works on every DiT family accel supports (PixArt, DiT, SD3, Flux, Lumina, Wan, CogVideoX,
HunyuanVideo, LTX-Video) through the adapters' component lists. Optionally the unconditional CFG
branch follows its own schedule (``uncond_interval``): for two-call pipelines each call uses its
own mask; for stacked ``[uncond, cond]`` batches only the half that must run is computed and the
other half is spliced in from the cache.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import torch.nn as nn
from diffusers.hooks.hooks import StateManager

from ..compiling import DecidingHook, eager
from ..config import PluginConfig, check_int
from ..context import CallInfo, DenoisingContext
from ..errors import ConfigError, UnsupportedModelError
from ..facts import Field, Gene, PluginFacts
from ..plugin import Plugin, register_plugin
from ..tensors import first_tensor, fit_batch, leading_batch, slice_batch, splice_rows
from .forecast import CachedOutput, CacheMemory, check_forecast, position
from .schedule import CacheSchedule, fora_schedule

if TYPE_CHECKING:
    from ..pipelines.registry import Adapter
    from ..session import DenoiserSession


@dataclasses.dataclass(frozen=True)
class BlockCacheConfig(PluginConfig):
    """Block/component caching settings.

    Args:
        schedule: ``"fora"`` (built-in every-N family) or the path of a JSON schedule (e.g. one from
            ``accel search-cache``), whose shape must match the run's steps and blocks.
        interval: FORA interval N: everything is recomputed every N steps (1 = no caching).
        warmup_steps: the first k steps are always dense.
        live_first_blocks / live_last_blocks: blocks at either end that are never cached.
        components: which components may be cached (default: all the family has, e.g. PixArt
            ``("attn1", "attn2", "ff")``).
        uncond_interval: a separate FORA interval for the unconditional CFG branch (None: same).
        forecast_order: on cached steps, 0 reuses a component's last output; 1 or 2 extrapolates it
            with the line or parabola through its last 2 or 3 computed outputs. A JSON schedule may
            set the order per unit instead (its ``forecast_schedule``).
        forecast_variable: what the extrapolation is a function of: ``"step"`` or ``"timestep"``.
    """

    short_prefix = "blockcache"
    path_fields = ("schedule",)
    schedule: str = "fora"
    interval: int = 2
    warmup_steps: int = 0
    live_first_blocks: int = 0
    live_last_blocks: int = 0
    components: tuple[str, ...] | None = None
    uncond_interval: int | None = None
    forecast_order: int = 0
    forecast_variable: str = "step"

    def __post_init__(self) -> None:
        check_forecast("BlockCacheConfig", self.forecast_order, self.forecast_variable)
        if self.schedule != "fora":
            if not isinstance(self.schedule, str) or not self.schedule.endswith(".json"):
                raise ConfigError(
                    f"BlockCacheConfig.schedule must be 'fora' or the path of a .json schedule, got {self.schedule!r}"
                )
            if not os.path.exists(self.schedule):
                raise ConfigError(f"BlockCacheConfig.schedule: no such file {self.schedule!r}")
        check_int("BlockCacheConfig", "interval", self.interval, 1, 1000)
        check_int("BlockCacheConfig", "warmup_steps", self.warmup_steps, 0, 100000)
        check_int("BlockCacheConfig", "live_first_blocks", self.live_first_blocks, 0, 10000)
        check_int("BlockCacheConfig", "live_last_blocks", self.live_last_blocks, 0, 10000)
        check_int("BlockCacheConfig", "uncond_interval", self.uncond_interval, 1, 1000, allow_none=True)
        if self.components is not None and (
            not isinstance(self.components, tuple)
            or not self.components
            or not all(isinstance(c, str) for c in self.components)
        ):
            raise ConfigError("BlockCacheConfig.components must be None or a non-empty tuple of component names")

    def __str__(self) -> str:
        if self.schedule != "fora":
            return f"blockcache_{os.path.splitext(os.path.basename(self.schedule))[0]}"
        return super().__str__()


FACTS = PluginFacts(
    key="block_cache",
    title="BlockCache (FORA)",
    blurb="DiTs: recompute attention/FFN outputs of each block every N steps and reuse them in between.",
    fields=(
        Field("interval", "interval N", "int", 1, 8, 1, info="recompute every N steps; 1 = off"),
        Field("warmup_steps", "dense warm-up steps", "int", 0, 20, 1),
        Field("live_first_blocks", "never-cached first blocks", "int", 0, 8, 1),
        Field("live_last_blocks", "never-cached last blocks", "int", 0, 8, 1),
    ),
    presets={
        "safe": dict(interval=2, warmup_steps=4, live_first_blocks=1, live_last_blocks=1),
        "balanced": dict(interval=2, warmup_steps=2, live_first_blocks=0, live_last_blocks=0),
        "fast": dict(interval=3, warmup_steps=1, live_first_blocks=0, live_last_blocks=0),
    },
    identity=dict(interval=1, warmup_steps=0, live_first_blocks=0, live_last_blocks=0),
    genes=(Gene("interval", (2, 3, 4, 5)), Gene("warmup", (0, 1, 2, 3)), Gene("forecast_order", (0, 1, 2))),
    build=lambda k, steps: BlockCacheConfig(
        interval=k["interval"], warmup_steps=min(k["warmup"], max(0, steps - 2)), forecast_order=k["forecast_order"]
    ),
    sweep={
        "pixart-shapes": [{"type": "BlockCacheConfig", "schedule": "fora", "interval": n} for n in (2, 3)],
        "sd3-shapes": [{"type": "BlockCacheConfig", "schedule": "fora", "interval": 2}],
    },
    conflicts={
        "ras": (
            "BlockCache reuses block outputs computed over the full token sequence, while RAS recomputes a "
            "different subset of tokens at every step, so the cached outputs never match the live token set"
        )
    },
    order=1,
)


@dataclasses.dataclass
class BlockCacheState:
    """What one generation of BlockCache counts; reset at the start of every generation."""

    #: step -> (component calls computed, where a half-batch call counts 0.5; component calls)
    per_step: dict[int, tuple[float, int]] = dataclasses.field(default_factory=dict)
    forecast_calls: int = 0
    memory: CacheMemory = dataclasses.field(default_factory=CacheMemory)

    def count(self, step: int | None, computed: bool, half: bool = False, forecast: bool = False) -> None:
        step = -1 if step is None else step
        done, total = self.per_step.get(step, (0.0, 0))
        self.per_step[step] = (done + (0.5 if half else float(computed)), total + 1)
        self.forecast_calls += forecast

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


class CacheDecisions:
    """Which unit runs at which step (the schedule, made once per step count) and how a cached unit is
    estimated (its forecast order)."""

    def __init__(
        self,
        config: BlockCacheConfig,
        loaded: CacheSchedule | None,
        family: str,
        num_blocks: int,
        components: tuple[str, ...],
    ) -> None:
        self.config = config
        self.loaded = loaded
        self.family = family
        self.num_blocks = num_blocks
        self.components = components
        self.schedules: dict[int, CacheSchedule] = {}  # step count -> schedule

    def schedule_for(self, num_steps: int) -> CacheSchedule:
        if self.loaded is not None:
            self.loaded.check(num_steps, self.num_blocks, self.components, self.family)
            return self.loaded
        c = self.config
        if c.interval > 1 and c.warmup_steps >= num_steps:
            raise ConfigError(
                f"BlockCacheConfig.warmup_steps ({c.warmup_steps}) must be < the {num_steps} steps this call runs; "
                "as given no step is ever cached"
            )
        shape = (num_steps, self.num_blocks, self.components)
        live = (c.warmup_steps, c.live_first_blocks, c.live_last_blocks, c.components)
        cond = fora_schedule(*shape, c.interval, *live, self.family)
        if c.uncond_interval is not None:
            cond.uncond_recompute = fora_schedule(*shape, c.uncond_interval, *live).recompute
        return cond

    def decide(self, info: CallInfo, block: int, component: int) -> tuple[bool, bool]:
        """``(run for this call / the cond half, run for the uncond half)``."""
        step, total = info.require_steps("BlockCache")
        if total not in self.schedules:
            self.schedules[total] = self.schedule_for(total)
        schedule = self.schedules[total]
        if info.cfg_stacked:
            cond = bool(schedule.recompute[step, block, component])
            return cond, bool(schedule.mask_for("uncond")[step, block, component])
        run = bool(schedule.mask_for(info.branch)[step, block, component])
        return run, run

    @property
    def per_unit_forecast(self) -> bool:
        return self.loaded is not None and self.loaded.forecast is not None

    @property
    def history(self) -> int:
        """Computed outputs each component keeps: the newest, plus the forecast's extra points."""
        if self.per_unit_forecast:
            return 1 + int(self.loaded.forecast.max(initial=0))
        return 1 + self.config.forecast_order

    def order_for(self, info: CallInfo, block: int, component: int) -> int:
        """The forecast order of a cached unit: the schedule's, else the config's."""
        if self.per_unit_forecast:
            return int(self.loaded.forecast[info.step_index, block, component])
        return self.config.forecast_order


@dataclasses.dataclass
class _Decision:
    """What a component hook does at one call: return ``output``, or run on ``args``/``kwargs``
    (all rows, or the half batch ``rows``) and record at forecast position ``x``."""

    info: CallInfo
    output: Any
    args: tuple
    kwargs: dict
    x: float
    batch: int
    rows: slice | None = None
    sample_shape: tuple[int, ...] | None = None


class ComponentCacheHook(DecidingHook):
    """On one component of one block: run or reuse according to the schedule."""

    _is_stateful = True

    def __init__(
        self,
        context: DenoisingContext,
        decisions: CacheDecisions,
        counts: BlockCacheState,
        block: int,
        component: int,
        variable: str,
    ) -> None:
        super().__init__(context)
        self.decisions = decisions
        self.counts = counts
        self.block = block
        self.component = component
        self.variable = variable
        self.state = StateManager(CachedOutput)

    @eager
    def _decide(self, args: tuple, kwargs: dict) -> _Decision:
        """Reuse/forecast (``output`` set), or which rows to compute: all, or one half of a stacked
        CFG batch whose halves follow different schedules (the other half is reused or forecast)."""
        info = self.context.current
        state = self.state.get_state()
        batch = leading_batch(args) or leading_batch(kwargs)
        first = first_tensor(args) if first_tensor(args) is not None else first_tensor(kwargs)
        shape = tuple(first.shape[1:]) if first is not None else None
        if state.output is not None and state.sample_shape != shape:
            state.reset()  # the input changed shape (a sequence that grew): what was cached does not fit
        run, run_uncond = self.decisions.decide(info, self.block, self.component)
        x = position(info, self.variable)
        if state.output is not None and state.batch == batch and info.cfg_stacked and run != run_uncond:
            rows = info.rows("uncond" if run_uncond else "cond", batch // 2)
            args, kwargs = slice_batch(args, rows, batch), slice_batch(kwargs, rows, batch)
            return _Decision(info, None, args, kwargs, x, batch, rows, shape)
        if not run and state.output is not None:
            order = self.decisions.order_for(info, self.block, self.component)
            cached = fit_batch(state.estimate(x, order), state.batch, batch, info)
            if cached is not None:
                self.counts.count(info.step_index, False, forecast=order > 0 and len(state.points) > 1)
                return _Decision(info, cached, args, kwargs, x, batch, sample_shape=shape)
        return _Decision(info, None, args, kwargs, x, batch, sample_shape=shape)

    @eager
    def _record(self, decision: _Decision, fresh: Any) -> Any:
        """Record the computed output; for a half batch, splice it into the other half's estimate
        (a forecast lies on the polynomial it came from, so it does not bend the next forecast)."""
        info = decision.info
        state = self.state.get_state()
        output = fresh
        if decision.rows is not None:
            estimate = state.estimate(decision.x, self.decisions.order_for(info, self.block, self.component))
            output = splice_rows(estimate, fresh, decision.rows, decision.batch)
        state.record(decision.x, output, decision.batch, self.decisions.history, info)
        state.sample_shape = decision.sample_shape
        self.counts.count(info.step_index, True, half=decision.rows is not None)
        self.counts.memory.note((id(self), self.state.context.name), state)
        return output

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.state.reset()
        return module


@register_plugin
class BlockCachePlugin(Plugin):
    config_cls = BlockCacheConfig
    name = "block_cache"
    kinds = frozenset({"image_dit", "video_dit"})
    claims = frozenset({"block_outputs"})
    facts = FACTS

    def __init__(self, config: BlockCacheConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self.loaded: CacheSchedule | None = CacheSchedule.load(config.schedule) if config.schedule != "fora" else None
        self.state = BlockCacheState()
        self.blocks: list[tuple[str, nn.Module]] = []
        self.components: tuple[str, ...] = ()
        self.decisions: CacheDecisions | None = None

    def attach(self) -> None:
        adapter = self.session.adapter
        self.components = adapter.component_names()
        self._check_schedule(adapter)
        self.blocks = adapter.blocks(self.session.denoiser)
        live = self.config.live_first_blocks + self.config.live_last_blocks
        if self.loaded is None and self.config.interval > 1 and live >= len(self.blocks):
            raise ConfigError(
                f"BlockCacheConfig.live_first_blocks + live_last_blocks ({live}) must be < the model's "
                f"{len(self.blocks)} blocks; as given no block is ever cached"
            )
        self.decisions = CacheDecisions(self.config, self.loaded, adapter.family, len(self.blocks), self.components)
        hooked = 0
        for b, (_, block) in enumerate(self.blocks):
            for attr, (module, _kind) in adapter.components(block).items():
                if attr in self.components:
                    c = self.components.index(attr)
                    hook = ComponentCacheHook(
                        self.session.context, self.decisions, self.state, b, c, self.config.forecast_variable
                    )
                    self.session.register_hook(module, hook, self.hook_name())
                    hooked += 1
        if not hooked:
            raise UnsupportedModelError(
                f"BlockCache found nothing to cache in {adapter.title}: "
                + (
                    "its blocks have no attention or feed-forward children that discovery recognises"
                    if adapter.discovered
                    else f"no block under {list(adapter.block_lists)} has the components {list(self.components)}"
                )
            )

    def _check_schedule(self, adapter: Adapter) -> None:
        if self.config.components is not None:
            unknown = sorted(set(self.config.components) - set(self.components))
            if unknown:
                raise ConfigError(
                    f"BlockCacheConfig.components: {unknown} are not components of {adapter.family}; "
                    f"its components are {list(self.components)}"
                )
        if self.loaded is not None and self.loaded.family and self.loaded.family != adapter.family:
            raise ConfigError(
                f"this schedule was made for the {self.loaded.family!r} family, the model is {adapter.family!r}"
            )
        if self.loaded is not None and tuple(self.loaded.components) != self.components:
            raise ConfigError(
                f"the schedule's components {list(self.loaded.components)} do not match "
                f"{adapter.family}'s {list(self.components)}"
            )

    def on_generation_start(self) -> None:
        self.state.reset()

    def stats(self) -> dict[str, Any]:
        counts = self.state
        steps = sorted(counts.per_step)
        computed = sum(counts.per_step[s][0] for s in steps)
        calls = sum(counts.per_step[s][1] for s in steps)
        per_unit = self.decisions is not None and self.decisions.per_unit_forecast
        return {
            "schedule": self.config.schedule if self.loaded is None else os.path.basename(self.config.schedule),
            "blocks": len(self.blocks),
            "components": list(self.components),
            "component_calls": calls,
            "component_calls_computed": computed,
            "recompute_fraction": round(computed / calls, 4) if calls else None,
            "recompute_fraction_per_step": [round(counts.per_step[s][0] / counts.per_step[s][1], 3) for s in steps],
            "forecast_order": "per unit" if per_unit else self.config.forecast_order,
            "forecast_calls": counts.forecast_calls,
            "cache_bytes": counts.memory.peak_cache_bytes,
            "forecast_bytes": counts.memory.peak_forecast_bytes,
        }


def apply_block_cache(module: Any, config: BlockCacheConfig | None = None, **kwargs: Any):
    """diffusers-style entry point: ``apply_block_cache(pipe_or_transformer, BlockCacheConfig(...))``."""
    from ..api import apply

    return apply(module, config or BlockCacheConfig(), **kwargs)
