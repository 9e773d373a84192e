"""Run a pipeline's N steps on N chosen levels of its scheduler's own M-step schedule.

Optimal Stepsize for diffusion sampling (OSS; Pei et al., arXiv 2503.21774) and the dynamic-programming
schedule of "On the Trajectory Regularity of ODE-based Diffusion Sampling" (Chen et al., ICML 2024)
choose N timesteps out of a fine reference trajectory. Algorithm: when the pipeline sets N timesteps,
the scheduler is set for ``reference_steps`` (M) instead and its timesteps and sigmas are cut to the
chosen ``indices`` (plus the final sigma), so the solver steps between the chosen levels.
``accel schedule`` (:mod:`accel.tuning.schedule_search`) chooses the indices.

Schedulers whose ``step`` reads its ``sigmas`` (Euler, flow matching, DPM-Solver, UniPC, ...) take a
schedule; those that space steps evenly inside ``step`` (DDIM, PNDM, DDPM) or repeat timesteps
(Heun, KDPM2) are refused, with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from ..config import PluginConfig, check_int, check_int_tuple
from ..errors import ConfigError, UnsupportedModelError
from ..files import read_json
from ..plugin import Plugin, register_plugin

if TYPE_CHECKING:
    from ..session import DenoiserSession

#: keyword arguments of ``set_timesteps`` that choose the schedule (replaced by the plugin's)
_SCHEDULE_ARGS = ("num_inference_steps", "timesteps", "sigmas")


@dataclasses.dataclass(frozen=True)
class TimestepScheduleConfig(PluginConfig):
    """N sampling steps at chosen levels of the scheduler's ``reference_steps``-step schedule.

    Args:
        reference_steps: M, the step count of the fine schedule the levels are taken from.
        indices: the N levels (0-based positions in the M-step schedule), strictly increasing and
            starting at 0 (the first level is the starting noise). The pipeline must be called with
            ``num_inference_steps=len(indices)``.
    """

    short_prefix = "schedule"
    reference_steps: int = 50
    indices: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        name = "TimestepScheduleConfig"
        check_int(name, "reference_steps", self.reference_steps, 1, 10000)
        check_int_tuple(name, "indices", self.indices, 0, self.reference_steps - 1)
        if not self.indices or self.indices[0] != 0:
            raise ConfigError(f"{name}.indices must start at 0 (the starting noise level), got {self.indices!r}")
        if any(b <= a for a, b in zip(self.indices, self.indices[1:])):
            raise ConfigError(f"{name}.indices must be strictly increasing, got {self.indices!r}")

    @property
    def steps(self) -> int:
        return len(self.indices)

    @classmethod
    def load(cls, path: str) -> TimestepScheduleConfig:
        """The schedule ``accel schedule`` wrote to ``path`` (JSON data, never code)."""
        data = read_json(path, "timestep schedule")
        if not isinstance(data, dict) or data.get("type") != cls.__name__:
            raise ConfigError(f'{path} is not a {cls.__name__} (a JSON object with "type": "{cls.__name__}")')
        return cls.from_dict(data)


def cut_schedule(scheduler: Any, indices: tuple[int, ...]) -> None:
    """Keep the scheduler's timesteps at ``indices`` and their sigmas plus the final one."""
    index = torch.tensor(indices, dtype=torch.long)
    scheduler.timesteps = scheduler.timesteps[index.to(scheduler.timesteps.device)]
    sigmas = scheduler.sigmas
    scheduler.sigmas = torch.cat([sigmas[index.to(sigmas.device)], sigmas[-1:]])
    scheduler.num_inference_steps = len(indices)


def takes_schedule(scheduler: Any, reference_steps: int) -> str | None:
    """Why ``scheduler`` cannot run a chosen schedule (None: it can). Probed on a fresh one of its config."""
    name = type(scheduler).__name__
    probe = type(scheduler).from_config(scheduler.config)
    try:
        probe.set_timesteps(reference_steps)
    except Exception as exc:  # the scheduler's own refusal, passed on
        return f"{name}.set_timesteps({reference_steps}) failed: {exc}"
    sigmas, timesteps = getattr(probe, "sigmas", None), getattr(probe, "timesteps", None)
    if not isinstance(sigmas, torch.Tensor) or timesteps is None:
        return f"{name} spaces its steps evenly inside step() and keeps no sigmas, so it cannot skip levels"
    if len(sigmas) != len(timesteps) + 1 or len(timesteps) != reference_steps:
        return f"{name} repeats timesteps within a step ({len(timesteps)} for {reference_steps} steps)"
    return None


@register_plugin
class TimestepSchedulePlugin(Plugin):
    config_cls = TimestepScheduleConfig
    name = "timestep_schedule"
    kinds = frozenset({"unet", "image_dit", "video_dit"})
    claims = frozenset({"timesteps"})
    needs_pipeline = True

    def __init__(self, config: TimestepScheduleConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self.used: dict[str, list[float]] = {}

    def attach(self) -> None:
        scheduler = self.session.context.pipeline.scheduler
        why = takes_schedule(scheduler, self.config.reference_steps)
        if why is not None:
            raise UnsupportedModelError(
                f"TimestepScheduleConfig needs a scheduler whose step reads its sigmas: {why}. Swap it first, "
                "e.g. pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)"
            )
        self.session.context.add_timesteps_wrapper(self.set_timesteps)

    def detach(self) -> None:
        self.session.context.remove_timesteps_wrapper(self.set_timesteps)

    def set_timesteps(self, original: Any, *args: Any, **kwargs: Any) -> Any:
        """Wrapper of ``scheduler.set_timesteps``: the M-step schedule, cut to the chosen levels."""
        requested = _requested_steps(args, kwargs)
        if requested != self.config.steps:
            raise ConfigError(
                f"this TimestepScheduleConfig chooses {self.config.steps} steps; call the pipeline with "
                f"num_inference_steps={self.config.steps} (it asked for {requested})"
            )
        rest = {k: v for k, v in kwargs.items() if k not in _SCHEDULE_ARGS}
        out = original(self.config.reference_steps, *args[1:], **rest)
        scheduler = self.session.context.pipeline.scheduler
        cut_schedule(scheduler, self.config.indices)
        self.used = {
            "timesteps": [round(float(t), 4) for t in scheduler.timesteps],
            "sigmas": [round(float(s), 5) for s in scheduler.sigmas],
        }
        return out

    def on_generation_start(self) -> None:
        self.used = {}

    def stats(self) -> dict[str, Any]:
        return {"reference_steps": self.config.reference_steps, "indices": list(self.config.indices), **self.used}


def _requested_steps(args: tuple, kwargs: dict) -> int | None:
    """The step count a ``set_timesteps`` call asks for (positionally, by keyword, or as a list)."""
    if args and args[0] is not None:
        return int(args[0])
    if kwargs.get("num_inference_steps") is not None:
        return int(kwargs["num_inference_steps"])
    for name in ("sigmas", "timesteps"):
        if kwargs.get(name) is not None:
            return len(kwargs[name])
    return None


def apply_timestep_schedule(module: Any, config: TimestepScheduleConfig, **kwargs: Any):
    """diffusers-style entry point: ``apply_timestep_schedule(pipe, TimestepScheduleConfig(...))``."""
    from ..api import apply

    return apply(module, config, **kwargs)


__all__ = ["TimestepScheduleConfig", "TimestepSchedulePlugin", "apply_timestep_schedule", "cut_schedule"]
