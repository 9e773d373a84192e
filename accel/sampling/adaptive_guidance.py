"""Adaptive Guidance (Castillo et al., AAAI 2025, arXiv 2312.12487).

Algorithm: at every step compare the conditional and unconditional predictions by cosine
similarity; once it reaches ``threshold`` (gamma), classifier-free guidance latches off for the
rest of the generation and only the conditional branch is evaluated.

``reduction="batch"`` tests the whole batch as one vector (as the public ComfyUI node does);
``"sample"`` latches each sample on its own. ``min_steps`` delays the test, ``max_step`` drops CFG
at that step at the latest. Negative prompts keep working while CFG is on.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from ..config import PluginConfig, check_choice, check_float, check_int
from ..context import CallInfo
from ..errors import ConfigError, StateError
from ..facts import Field, Gene, PluginFacts
from ..plugin import Plugin, register_plugin
from .cfg_batch import cosine_per_sample, cosine_whole
from .guidance_hook import GuidanceHook, Uncond

if TYPE_CHECKING:
    from ..session import DenoiserSession

REDUCTIONS = ("batch", "sample")


@dataclasses.dataclass(frozen=True)
class AdaptiveGuidanceConfig(PluginConfig):
    """Adaptive guidance settings.

    Args:
        threshold: gamma; CFG is dropped once cos(cond, uncond) >= gamma. Any value above 1 never
            triggers (identical to plain CFG); -1 drops CFG right after the first step.
        min_steps: steps before the similarity is tested.
        max_step: step from which CFG is always dropped (None: only the test decides).
        reduction: ``"batch"`` (one decision for the whole batch) or ``"sample"`` (per sample).
    """

    short_prefix = "ag"
    threshold: float = 0.99
    min_steps: int = 0
    max_step: int | None = None
    reduction: str = "batch"

    def __post_init__(self) -> None:
        check_float("AdaptiveGuidanceConfig", "threshold", self.threshold, -1.0, 2.0)
        check_int("AdaptiveGuidanceConfig", "min_steps", self.min_steps, 0, 100000)
        check_int("AdaptiveGuidanceConfig", "max_step", self.max_step, 0, 100000, allow_none=True)
        check_choice("AdaptiveGuidanceConfig", "reduction", self.reduction, REDUCTIONS)
        if self.max_step is not None and self.min_steps > self.max_step:
            raise ConfigError(
                f"AdaptiveGuidanceConfig.min_steps ({self.min_steps}) must be <= max_step ({self.max_step}): "
                "CFG is dropped from max_step whatever the similarity test says"
            )


class GuidanceLatch:
    """AG's decision for one sample (or the batch): CFG is on until the similarity of the two predictions
    reaches ``threshold`` at a step ``>= min_steps``, off from the next step on, and off from
    ``max_step`` whatever the similarity. Shared by the plugin and the diffusers guider."""

    def __init__(self, threshold: float, min_steps: int = 0, max_step: int | None = None) -> None:
        self.threshold, self.min_steps, self.max_step = threshold, min_steps, max_step
        self.dropped_at: int | None = None  # first step without CFG

    def off(self, step: int) -> bool:
        if self.dropped_at is not None and step >= self.dropped_at:
            return True
        return self.max_step is not None and step >= self.max_step

    def test(self, step: int, similarity: float) -> None:
        if self.dropped_at is None and step >= self.min_steps and similarity >= self.threshold:
            self.dropped_at = step + 1


@dataclasses.dataclass
class AdaptiveGuidanceState:
    """One generation of AG, reset at its start."""

    latches: dict[int, GuidanceLatch] = dataclasses.field(default_factory=dict)  # sample (0: batch) -> latch
    similarities: dict[int, float] = dataclasses.field(default_factory=dict)  # step -> mean cosine similarity
    ran: dict[int, list[Uncond]] = dataclasses.field(default_factory=dict)  # step -> per sample, as it ran


class AdaptiveGuidancePolicy:
    """AG as a :class:`~accel.sampling.guidance_hook.GuidancePolicy`: per sample, evaluate the
    unconditional branch until its latch drops CFG."""

    def __init__(self, config: AdaptiveGuidanceConfig) -> None:
        self.config = config
        self.state = AdaptiveGuidanceState()

    def reset(self) -> None:
        self.state = AdaptiveGuidanceState()

    def _latch(self, sample: int) -> GuidanceLatch:
        key = sample if self.config.reduction == "sample" else 0
        if key not in self.state.latches:
            c = self.config
            self.state.latches[key] = GuidanceLatch(c.threshold, c.min_steps, c.max_step)
        return self.state.latches[key]

    def modes(self, info: CallInfo, samples: int) -> list[Uncond]:
        return [Uncond.DROP if self._latch(i).off(info.step_index) else Uncond.CFG for i in range(samples)]

    def observe(self, step: int, cond: torch.Tensor, uncond: torch.Tensor, modes: list[Uncond]) -> None:
        """Record what ran and its similarity; latch CFG off from the next step where it reached gamma."""
        self.state.ran[step] = list(modes)
        rows = [i for i, m in enumerate(modes) if m is Uncond.CFG]
        if not rows:
            return
        index = torch.tensor(rows)
        per_sample = cosine_per_sample(cond[index], uncond[index])
        self.state.similarities[step] = round(float(per_sample.mean()), 6)
        if self.config.reduction == "batch":
            if step >= self.config.min_steps:  # the whole batch as one vector, as the public ComfyUI node
                self._latch(0).test(step, float(cosine_whole(cond[index], uncond[index])))
        else:
            for row, similarity in zip(rows, per_sample.tolist()):
                self._latch(row).test(step, similarity)

    def predict_uncond(self, step: int, sample: int, cond: torch.Tensor) -> torch.Tensor:
        raise StateError("adaptive guidance never predicts the unconditional branch")

    def stats(self) -> dict[str, Any]:
        """From what ran: the step from which the unconditional branch was never evaluated again (per
        sample with ``reduction="sample"``), and per step ``C`` (evaluated), ``p`` (predicted), ``-``
        (dropped) or ``m`` (mixed across samples)."""
        ran = self.state.ran
        steps = sorted(ran)
        samples = max((len(m) for m in ran.values()), default=0)
        dropped = {
            i: _off_from(steps, [ran[s][i] is not Uncond.CFG if i < len(ran[s]) else False for s in steps])
            for i in range(samples)
        }
        return {
            "threshold": self.config.threshold,
            "cfg_dropped_at_step": _off_from(steps, [all(m is not Uncond.CFG for m in ran[s]) for s in steps])
            if self.config.reduction == "batch"
            else {i: step for i, step in dropped.items() if step is not None},
            "uncond_per_step": "".join(_code(ran[s]) for s in steps),
            "similarities": [self.state.similarities[s] for s in sorted(self.state.similarities)],
        }


FACTS = PluginFacts(
    key="adaptive_guidance",
    title="Adaptive guidance",
    blurb="Classifier-free guidance models: drop the unconditional branch once it agrees with the conditional one.",
    fields=(
        Field(
            "threshold",
            "threshold γ",
            "float",
            -1.0,
            1.01,
            0.001,
            info="drop CFG once cos(cond, uncond) ≥ γ; above 1 = off, -1 = after step 1",
        ),
        Field("min_steps", "steps before testing", "int", 0, 50, 1),
        Field("reduction", "decision per", "choice", choices=("batch", "sample")),
    ),
    presets={
        "safe": dict(threshold=0.999, min_steps=2, reduction="batch"),
        "balanced": dict(threshold=0.99, min_steps=0, reduction="batch"),
        "fast": dict(threshold=0.95, min_steps=0, reduction="batch"),
    },
    identity=dict(threshold=1.01, min_steps=0, reduction="batch"),
    genes=(Gene("threshold", (0.99, 0.97, 0.98, 0.995, 0.999)), Gene("min_steps", (0, 1, 2, 3))),
    build=lambda k, steps: AdaptiveGuidanceConfig(threshold=k["threshold"], min_steps=min(k["min_steps"], steps - 1)),
    sweep={
        "sd-digits": [{"type": "AdaptiveGuidanceConfig", "threshold": 0.99}],
        "pixart-shapes": [{"type": "AdaptiveGuidanceConfig", "threshold": 0.99}],
        "wan-moving-shapes": [{"type": "AdaptiveGuidanceConfig", "threshold": 0.99}],
    },
    needs_cfg=True,
    order=4,
)


@register_plugin
class AdaptiveGuidancePlugin(Plugin):
    config_cls = AdaptiveGuidanceConfig
    name = "adaptive_guidance"
    kinds = frozenset({"unet", "image_dit", "video_dit"})
    claims = frozenset({"cfg_batch"})
    facts = FACTS

    def __init__(self, config: AdaptiveGuidanceConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self.policy = AdaptiveGuidancePolicy(config)

    def attach(self) -> None:
        hook = GuidanceHook(self.session.context, self.session.adapter, self.policy)
        self.session.register_hook(self.session.denoiser, hook, self.hook_name())

    def on_generation_start(self) -> None:
        self.policy.reset()

    def stats(self) -> dict[str, Any]:
        return self.policy.stats()


def _off_from(steps: list[int], off: list[bool]) -> int | None:
    """The first step of the trailing run of ``off`` steps (None if the last step was on)."""
    start = None
    for step, is_off in zip(steps, off):
        start = (step if start is None else start) if is_off else None
    return start


def _code(modes: list[Uncond]) -> str:
    kinds = set(modes)
    if len(kinds) > 1:
        return "m"
    return {Uncond.CFG: "C", Uncond.PREDICT: "p", Uncond.DROP: "-"}[kinds.pop()] if kinds else "?"


def apply_adaptive_guidance(module: Any, config: AdaptiveGuidanceConfig | None = None, **kwargs: Any):
    """diffusers-style entry point: ``apply_adaptive_guidance(pipe, AdaptiveGuidanceConfig(...))``."""
    from ..api import apply

    return apply(module, config or AdaptiveGuidanceConfig(), **kwargs)
