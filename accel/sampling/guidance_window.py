"""Classifier-free guidance in a window of the steps (Kynkäänniemi et al., "Applying Guidance in a Limited
Interval Improves Sample and Distribution Quality in Diffusion Models", NeurIPS 2024, arXiv 2404.07724),
and CFG-Zero*'s zeroed first steps (Fan et al., arXiv 2503.18886).

Algorithm: steps whose position ``step / N`` lies in ``[start, stop)`` evaluate both CFG branches; the
others evaluate the conditional branch alone (the pipeline's ``uncond + s (cond - uncond)`` then equals
``cond``). The first ``zero_steps`` steps of a flow-matching sampler do not call the model at all: the
velocity is zero, so the sample stays at its starting noise while the noise level falls.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput

from ..compiling import DecidingHook, eager
from ..config import PluginConfig, check_float, check_int
from ..context import CallInfo, DenoisingContext, main_input
from ..errors import ConfigError, StateError, UnsupportedModelError
from ..facts import Gene, PluginFacts
from ..plugin import Plugin, register_plugin
from .guidance_hook import GuidanceHook, Uncond
from .schedulers import is_flow_matching

if TYPE_CHECKING:
    from ..session import DenoiserSession


@dataclasses.dataclass(frozen=True)
class GuidanceWindowConfig(PluginConfig):
    """Where CFG runs, and how many first steps are zeroed.

    Args:
        start, stop: CFG runs on the steps ``i`` of N with ``start <= i / N < stop``; the conditional
            branch alone elsewhere. ``(0, 1)``: every step (plain CFG).
        zero_steps: CFG-Zero*'s zero-init: the first steps return a zero velocity without calling the
            model (flow-matching schedulers only; 0 = off).
    """

    short_prefix = "window"
    start: float = 0.0
    stop: float = 1.0
    zero_steps: int = 0

    def __post_init__(self) -> None:
        name = "GuidanceWindowConfig"
        check_float(name, "start", self.start, 0.0, 1.0)
        check_float(name, "stop", self.stop, 0.0, 1.0)
        check_int(name, "zero_steps", self.zero_steps, 0, 1000)
        if self.start >= self.stop:
            raise ConfigError(f"{name}.start ({self.start}) must be below stop ({self.stop})")

    def cfg_on(self, step: int, total: int) -> bool:
        return self.start <= step / total < self.stop


class WindowPolicy:
    """The window as a :class:`~accel.sampling.guidance_hook.GuidancePolicy` (no data decides anything)."""

    def __init__(self, config: GuidanceWindowConfig) -> None:
        self.config = config
        self.ran: dict[int, bool] = {}  # step -> CFG evaluated

    def modes(self, info: CallInfo, samples: int) -> list[Uncond]:
        step, total = info.require_steps("GuidanceWindowConfig")
        return [Uncond.CFG if self.config.cfg_on(step, total) else Uncond.DROP] * samples

    def observe(self, step: int, cond: torch.Tensor, uncond: torch.Tensor, modes: list[Uncond]) -> None:
        self.ran[step] = all(m is Uncond.CFG for m in modes)

    def predict_uncond(self, step: int, sample: int, cond: torch.Tensor) -> torch.Tensor:
        raise StateError("the guidance window never predicts the unconditional branch")


@dataclasses.dataclass
class _Zeroed:
    output: Any = None
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)


class ZeroStepsHook(DecidingHook):
    """Outermost hook: on the first ``zero_steps`` steps return a zero prediction, the model not called."""

    def __init__(self, context: DenoisingContext, zero_steps: int) -> None:
        super().__init__(context)
        self.zero_steps = zero_steps
        self.zeroed: set[int] = set()

    @eager
    def _decide(self, args: tuple, kwargs: dict) -> _Zeroed:
        info = self.context.current
        if info is None or info.step_index is None or info.step_index >= self.zero_steps:
            return _Zeroed(None, args, kwargs)
        self.zeroed.add(info.step_index)
        zero = torch.zeros_like(main_input(args, kwargs))
        return _Zeroed((zero,) if kwargs.get("return_dict", True) is False else Transformer2DModelOutput(sample=zero))

    @eager
    def _record(self, decision: _Zeroed, output: Any) -> Any:
        return output


FACTS = PluginFacts(
    key="guidance_window",
    title="Guidance window",
    blurb="Classifier-free guidance only in a window of the steps; CFG-Zero*'s zeroed first steps on flow models.",
    genes=(
        Gene("start", (0.0, 0.1, 0.2, 0.3)),
        Gene("stop", (1.0, 0.8, 0.7, 0.6, 0.5)),
        Gene("zero_steps", (0, 1, 2)),
    ),
    build=lambda k, steps: GuidanceWindowConfig(
        start=k["start"], stop=k["stop"], zero_steps=min(k["zero_steps"], steps - 1)
    ),
    fits=lambda config, target: config.zero_steps == 0 or target.flow_matching,
    needs_cfg=True,
    order=6,
)


@register_plugin
class GuidanceWindowPlugin(Plugin):
    config_cls = GuidanceWindowConfig
    name = "guidance_window"
    facts = FACTS
    kinds = frozenset({"unet", "image_dit", "video_dit"})
    claims = frozenset({"cfg_batch"})

    def __init__(self, config: GuidanceWindowConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self.policy = WindowPolicy(config)
        self.zero: ZeroStepsHook | None = None

    def attach(self) -> None:
        session = self.session
        hook = GuidanceHook(session.context, session.adapter, self.policy)
        session.register_hook(session.denoiser, hook, self.hook_name())
        if self.config.zero_steps:
            self._check_flow_matching()
            self.zero = ZeroStepsHook(session.context, self.config.zero_steps)
            session.register_hook(session.denoiser, self.zero, self.hook_name("zero"))

    def _check_flow_matching(self) -> None:
        pipe = self.session.context.pipeline
        scheduler = getattr(pipe, "scheduler", None)
        flow = is_flow_matching(scheduler)
        model = self.session.denoiser.config
        out = model.get("out_channels") or model.get("in_channels")
        if not flow or out != model.get("in_channels"):
            raise UnsupportedModelError(
                "GuidanceWindowConfig.zero_steps zeroes a flow-matching velocity (CFG-Zero*); "
                f"{type(scheduler).__name__ if scheduler is not None else 'a bare denoiser'} with this model "
                "is not a flow-matching sampler whose prediction has the latent's shape. Use zero_steps=0"
            )

    def on_generation_start(self) -> None:
        self.policy.ran = {}
        if self.zero is not None:
            self.zero.zeroed = set()

    def stats(self) -> dict[str, Any]:
        ran = self.policy.ran
        return {
            "start": self.config.start,
            "stop": self.config.stop,
            "uncond_per_step": "".join("C" if ran[s] else "-" for s in sorted(ran)),
            "zeroed_steps": sorted(self.zero.zeroed) if self.zero is not None else [],
        }


def apply_guidance_window(module: Any, config: GuidanceWindowConfig, **kwargs: Any):
    """diffusers-style entry point: ``apply_guidance_window(pipe, GuidanceWindowConfig(...))``."""
    from ..api import apply

    return apply(module, config, **kwargs)


__all__ = ["GuidanceWindowConfig", "GuidanceWindowPlugin", "apply_guidance_window"]
