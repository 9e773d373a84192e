"""Run a pipeline with another diffusers solver: the "best solver" rival of fewer steps, and a gene.

Higher-order multistep solvers reach the same quality in fewer steps than DDIM or first-order Euler:
DPM-Solver++ (Lu et al., arXiv 2211.01095) and UniPC (Zhao et al., NeurIPS 2023). Algorithm: at apply,
the pipeline's scheduler is replaced by the named one built from its config (same noise schedule,
prediction type and spacing; flow-matching pipelines get the solver's flow-sigma mode with the same
shift); ``accel.remove`` puts the original scheduler object back.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from ..config import PluginConfig, check_choice
from ..errors import UnsupportedModelError
from ..plugin import Plugin, register_plugin
from .schedulers import is_flow_matching

if TYPE_CHECKING:
    from ..session import DenoiserSession

#: solver name -> diffusers scheduler class; which of them fit a model is decided at apply
SOLVERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "flow_euler": "FlowMatchEulerDiscreteScheduler",
    "dpmsolver++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}
#: solvers with a flow-matching (velocity) mode
FLOW_SOLVERS = ("flow_euler", "dpmsolver++", "unipc")
#: solvers for variance-preserving noise schedules (epsilon, v or sample prediction)
VP_SOLVERS = ("ddim", "euler", "dpmsolver++", "unipc")


@dataclasses.dataclass(frozen=True)
class SolverConfig(PluginConfig):
    """Sample with another diffusers solver, built from the pipeline's own scheduler config.

    Args:
        solver: ``"dpmsolver++"`` (DPM-Solver++ 2M), ``"unipc"`` (UniPC, order 2), ``"ddim"``,
            ``"euler"`` or ``"flow_euler"``. Flow-matching pipelines take ``flow_euler``, ``dpmsolver++``
            and ``unipc``; the others ``ddim``, ``euler``, ``dpmsolver++`` and ``unipc``.
    """

    short_prefix: ClassVar[str] = "solver"
    solver: str = "dpmsolver++"

    def __post_init__(self) -> None:
        check_choice("SolverConfig", "solver", self.solver, SOLVERS)


def solver_problem(scheduler: Any, solver: str) -> str | None:
    """Why ``solver`` cannot replace ``scheduler`` (None: it can)."""
    flow = is_flow_matching(scheduler)
    allowed = FLOW_SOLVERS if flow else VP_SOLVERS
    if solver not in allowed:
        kind = "a flow-matching" if flow else "a variance-preserving"
        return f"{type(scheduler).__name__} is {kind} scheduler; its solvers are {', '.join(allowed)}"
    config = getattr(scheduler, "config", {}) or {}
    if flow and config.get("use_dynamic_shifting", False) and solver != "flow_euler":
        return (
            f"{type(scheduler).__name__} shifts its sigmas per resolution (use_dynamic_shifting, as in Flux), "
            "which only the flow Euler scheduler follows"
        )
    return None


def build_solver(scheduler: Any, solver: str) -> Any:
    """A fresh scheduler of ``solver`` with ``scheduler``'s noise schedule (and flow shift)."""
    import diffusers

    why = solver_problem(scheduler, solver)
    if why is not None:
        raise UnsupportedModelError(f"SolverConfig(solver={solver!r}) cannot run here: {why}")
    cls = getattr(diffusers, SOLVERS[solver])
    source = dict(scheduler.config)
    accepted = inspect.signature(cls.__init__).parameters
    # the other scheduler's own fields (a flow scheduler's shift bounds, ...) mean nothing to this one, and
    # diffusers warns about each on every build; the flow shift is carried over under this one's name
    config = {
        k: v for k, v in source.items() if (k in accepted or k.startswith("_")) and k not in ("shift", "flow_shift")
    }
    shift = float(source.get("flow_shift") or source.get("shift") or 1.0)
    if is_flow_matching(scheduler) and solver == "flow_euler":
        return cls.from_config(config, shift=shift)
    if is_flow_matching(scheduler):
        return cls.from_config(config, use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift)
    if not is_flow_matching(scheduler) and solver == "dpmsolver++":
        return cls.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    if solver == "ddim":  # DDIM's own default clips x0 to [-1, 1], which only pixel-space models want
        return cls.from_config(config, clip_sample=config.get("clip_sample", False))
    return cls.from_config(config)


@register_plugin
class SolverPlugin(Plugin):
    """Swaps the pipeline's scheduler for the chosen solver; ``remove`` puts the original object back."""

    config_cls = SolverConfig
    name = "solver"
    kinds = frozenset({"unet", "image_dit", "video_dit"})
    claims = frozenset({"scheduler"})
    needs_pipeline = True

    def __init__(self, config: SolverConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self._from = ""

    def attach(self) -> None:
        pipe = self.session.context.pipeline
        if getattr(pipe, "_accel_scheduler_stand_in", None) is not None:
            self._from = "(another denoiser of this pipeline swapped it)"
            return
        if self.session.context.wraps_timesteps:
            raise UnsupportedModelError(
                "apply SolverConfig before TimestepScheduleConfig (in the same accel.apply, list it first): the "
                "schedule is cut on the scheduler it finds at apply"
            )
        original = pipe.scheduler
        replacement = build_solver(original, self.config.solver)
        self._from = type(original).__name__
        pipe.scheduler = replacement
        #: (the scheduler class replaced, the solver's class): a plan's target check compares the former
        pipe._accel_scheduler_stand_in = (self._from, type(replacement).__name__)

        def restore() -> None:
            pipe.scheduler = original
            pipe._accel_scheduler_stand_in = None

        self.session.add_restorer(restore)

    def stats(self) -> dict[str, Any]:
        return {"solver": self.config.solver, "scheduler": SOLVERS[self.config.solver], "replaced": self._from}


def apply_solver(module: Any, config: SolverConfig | None = None, **kwargs: Any):
    """diffusers-style entry point: ``apply_solver(pipe, SolverConfig(solver="unipc"))``."""
    from ..api import apply

    return apply(module, config if config is not None else SolverConfig(**kwargs))


__all__ = ["SOLVERS", "SolverConfig", "SolverPlugin", "apply_solver", "build_solver", "solver_problem"]
