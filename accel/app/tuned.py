"""The "tuned" preset of the generate tab: the model's plan (made by ``accel tune``), picked by speed.

No Gradio here. A tuned request runs the baseline with the plan's full step count and guidance, and
the accelerated run with ``plan.pick(speedup=s)``: the setting's configs (ending with the plan's
target check) and its step count. The plugin panels are not used.

    plan = plan_for(entry)                       # AppError when the model has no (fitting) plan
    speedup = check_speedup(plan, 2.5)           # a finite number inside plan.speedup_range()
    run = resolve(plan, speedup)                 # run.setting.configs, run.setting.num_inference_steps
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..errors import ConfigError
from ..fingerprint import denoiser_fingerprint, fingerprint_mismatch
from ..plan import Plan, PlanSetting
from .models import AppError, ModelEntry

#: What the status line and the metrics say about the plugin panels while the tuned preset is on.
PANELS_NOT_USED = "plugin panels not used"
#: The speed slider's range and value before a model with a plan is selected (what API clients that
#: never select a model are checked against by the slider itself; the plan's own range is checked here).
SPEED_BOUNDS = (1.0, 100.0)
DEFAULT_SPEEDUP = 1.0
SPEED_STEP = 0.01


@dataclasses.dataclass(frozen=True)
class TunedRun:
    """The setting a tuned request ran, and the speed it asked for."""

    setting: PlanSetting
    requested_speedup: float

    @property
    def num_inference_steps(self) -> int:
        return self.setting.num_inference_steps

    def metrics(self) -> dict[str, Any]:
        """JSON-compatible: the setting, its step count, validated PSNR and the FLOP speedup it promised."""
        setting = self.setting
        return {
            "setting": str(setting),
            "num_inference_steps": setting.num_inference_steps,
            "plugins": [str(c) for c in setting.plugins],
            "psnr": round(setting.psnr, 4),
            "speedup": setting.speedup,
            "wall_speedup": setting.wall_speedup,
            "requested_speedup": self.requested_speedup,
            "plugin_panels": "not used",
        }

    def status(self) -> str:
        """The status line's part: ``tuned plan: <setting> (plugin panels not used)``."""
        return f"tuned plan: {self.setting} ({PANELS_NOT_USED})"


def plan_for(entry: ModelEntry) -> Plan:
    """The entry's tuned plan; :class:`AppError` if it has none, or (once loaded) if the plan does not fit it."""
    plan = entry.plan()
    problem = fit_problem(plan, entry.pipe) if entry.loaded else None
    if problem:
        raise AppError(f"the tuned plan of this model does not fit it: {problem}; make one with `accel tune`")
    return plan


def availability(entry: ModelEntry | None) -> tuple[Plan | None, str | None]:
    """``(plan, None)`` when the tuned preset can run on the (loaded) entry, else ``(None, reason)``."""
    if entry is None or not entry.loaded:
        return None, "the model is not available"
    try:
        return plan_for(entry), None
    except AppError as exc:
        return None, str(exc)


def fit_problem(plan: Plan, pipe: Any) -> str | None:
    """Why ``plan`` cannot run on ``pipe`` (another denoiser architecture or scheduler), or None.

    The plan's :class:`accel.plan.PlanTargetConfig` refuses such a pipeline as well; checking here
    lets the UI say so before anything runs.
    """
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    made_for = plan.target.get("denoiser")
    if denoiser is not None and isinstance(made_for, dict):
        mismatch = fingerprint_mismatch(made_for, denoiser_fingerprint(denoiser))
        if mismatch is not None and mismatch.kind == "architecture":  # other weights: the plan runs, and warns
            return mismatch.message
    scheduler = plan.target.get("scheduler")
    found = type(getattr(pipe, "scheduler", None)).__name__
    if scheduler and found != scheduler:
        return f"it was tuned with the {scheduler} scheduler, the pipeline uses {found}"
    return None


def check_speedup(plan: Plan, value: Any) -> float:
    """``value`` as a speed inside the plan's range (float rounding at the ends is clamped away)."""
    low, high = plan.speedup_range()
    span = f"between {low:g}x and {high:g}x (the range of this model's tuned plan)"
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise AppError(f"the tuned speed is missing; give one {span}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AppError(f"the tuned speed must be a number {span}, got {value!r}") from None
    if not math.isfinite(number):
        raise AppError(f"the tuned speed must be a finite number {span}, got {value!r}")
    tolerance = 1e-6 * max(1.0, high)
    if not low - tolerance <= number <= high + tolerance:
        raise AppError(f"the tuned speed must be {span}, got {number:g}x")
    return min(max(number, low), high)


def resolve(plan: Plan, speedup: float) -> TunedRun:
    """The setting ``plan.pick(speedup=...)`` returns for a checked speed."""
    try:
        return TunedRun(plan.pick(speedup=speedup), speedup)
    except ConfigError as exc:
        raise AppError(str(exc)) from None


def full_steps(plan: Plan, fallback: int) -> int:
    """The step count the plan was tuned against (the baseline's), else ``fallback``."""
    steps = plan.target.get("num_inference_steps") or plan.info.get("baseline_steps")
    return int(steps) if steps else fallback


def guidance(plan: Plan, fallback: float) -> float:
    """The guidance scale the plan was tuned at (both runs use it), else ``fallback``."""
    scale = plan.target.get("guidance_scale")
    return fallback if scale is None else float(scale)


def describe(plan: Plan) -> str:
    """The tuned panel's note for a model with a plan (Markdown)."""
    low, high = plan.speedup_range()
    scale = plan.target.get("guidance_scale")
    at = f"{full_steps(plan, 0)} steps" + ("" if scale is None else f", guidance {float(scale):g}")
    count = len(plan.settings)
    return (
        f"This model's plan (`accel tune`): {count} setting{'s' if count != 1 else ''} from {low:.2f}x to "
        f"{high:.2f}x fewer denoiser FLOPs, tuned against {at}. When on, the accelerated run uses the "
        f"setting the speed picks, the baseline runs {at}, and the plugin panels below are not used."
    )


def preview(plan: Plan, speedup: Any) -> str:
    """What the speed picks, for the tuned panel's note (Markdown); the error's words if it picks nothing."""
    try:
        run = resolve(plan, check_speedup(plan, speedup))
    except AppError as exc:
        return f"*{exc}*"
    return f"Speed {run.requested_speedup:g}x picks: `{run.setting}` ({PANELS_NOT_USED})."
