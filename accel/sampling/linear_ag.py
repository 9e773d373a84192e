"""LinearAG (Castillo et al., AAAI 2025, arXiv 2312.12487): unconditional predictions replaced by an
affine combination of past estimates, plus adaptive guidance for the remaining steps.

Algorithm: on the chosen steps ``t`` (every ``predict_every``-th step in the first ``predict_until``
fraction), the unconditional prediction is not evaluated but estimated as
``u_t = w0 c_t + sum_{k=1..K} (a_k c_{t-k} + b_k u_{t-k}) + d``, with per-step scalar coefficients
fitted by least squares on calibration trajectories (``accel calibrate-linear-ag``,
:mod:`accel.tuning.linear_ag_fit`); other steps
follow adaptive guidance. The paper's full text was not available to us: this is the affine form
of past score estimates its abstract describes, in the least-squares regression we chose.
Coefficients are JSON, loaded by path.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any

import torch

from ..config import check_float, check_int, check_number_list, check_str, field_of
from ..context import CallInfo
from ..errors import ConfigError
from ..facts import Gene, PluginFacts
from ..files import brief, read_json
from ..fingerprint import check_sketch, denoiser_fingerprint, fingerprint_mismatch, warn_once
from ..plugin import Plugin, register_plugin
from .adaptive_guidance import AdaptiveGuidanceConfig, AdaptiveGuidancePolicy
from .guidance_hook import GuidanceHook, Uncond

if TYPE_CHECKING:
    from ..session import DenoiserSession

FORMAT = "accel-linear-ag/3"


@dataclasses.dataclass(frozen=True)
class LinearAGConfig(AdaptiveGuidanceConfig):
    """LinearAG settings: ``coefficients`` (JSON path from ``accel calibrate-linear-ag``), which steps
    are predicted (every ``predict_every``-th step before ``predict_until`` x steps, once the history
    the coefficients need exists), and adaptive-guidance settings for the other steps."""

    short_prefix = "linearag"
    path_fields = ("coefficients",)
    coefficients: str = ""
    predict_every: int = 2
    predict_until: float = 0.5
    threshold: float = 0.995

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.coefficients or not os.path.isfile(self.coefficients):
            raise ConfigError(
                "LinearAGConfig.coefficients must be the path of a coefficients JSON file made by "
                f"`accel calibrate-linear-ag`; got {self.coefficients!r}"
            )
        check_int("LinearAGConfig", "predict_every", self.predict_every, 1, 1000)
        check_float("LinearAGConfig", "predict_until", self.predict_until, 0.0, 1.0)

    def __str__(self) -> str:
        return f"linearag_every{self.predict_every}_until{self.predict_until:g}_ag{self.threshold:g}"


def load_coefficients(path: str) -> dict[str, Any]:
    """The coefficients JSON written by ``accel calibrate-linear-ag``, every field checked; ConfigError
    (naming the field) for anything else."""
    data = read_json(path, "LinearAG coefficients")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        again = " (an older format: calibrate again)" if str(found).startswith("accel-linear-ag/") else ""
        raise ConfigError(
            f"{path} is not a LinearAG coefficients file (format {brief(found)}, expected {FORMAT!r}){again}"
        )
    where = f"LinearAG coefficients {path}"
    history = field_of(where, data, "history")
    check_int(where, "history", history, 1, 64)
    steps = field_of(where, data, "num_inference_steps")
    check_int(where, "num_inference_steps", steps, 1, 100_000)
    check_str(where, "scheduler", field_of(where, data, "scheduler"), max_len=200)
    check_float(where, "guidance_scale", field_of(where, data, "guidance_scale", required=False), 0, 1000, True)
    denoiser = field_of(where, data, "denoiser")
    for key in ("class", "config_sha256"):
        check_str(f"{where}.denoiser", key, field_of(f"{where}.denoiser", denoiser, key), max_len=200)
    check_sketch(f"{where}.denoiser", field_of(f"{where}.denoiser", denoiser, "weights"))
    coefficients = field_of(where, data, "coefficients")
    if not isinstance(coefficients, dict):
        raise ConfigError(f"{where}.coefficients must be a mapping of step -> weights, got {brief(coefficients)}")
    for step, weights in coefficients.items():
        if not (isinstance(step, str) and step.isdigit() and int(step) < steps):
            raise ConfigError(f"{where}.coefficients: keys must be step numbers in [0, {steps}), got {brief(step)}")
        check_number_list(f"{where}.coefficients", step, weights, length=2 * history + 2)
    return data


@dataclasses.dataclass
class LinearAGState:
    """One generation of LinearAG's own bookkeeping, reset at its start (AG's latch keeps its own)."""

    history: dict[int, tuple[torch.Tensor, torch.Tensor]] = dataclasses.field(default_factory=dict)  # step -> (c, u)
    predicted_steps: list[int] = dataclasses.field(default_factory=list)


class LinearAGPolicy:
    """LinearAG as a :class:`~accel.sampling.guidance_hook.GuidancePolicy`: on its chosen steps every
    unconditional prediction is the affine estimate; on the others, adaptive guidance decides."""

    def __init__(self, config: LinearAGConfig, coefficients: dict[str, Any]) -> None:
        self.config = config
        self.latch = AdaptiveGuidancePolicy(config)
        self.history_len = int(coefficients["history"])
        self.fitted_steps = int(coefficients["num_inference_steps"])
        fitted = coefficients["coefficients"]
        self.weights = {int(step): torch.tensor(w, dtype=torch.float32) for step, w in fitted.items()}
        self.state = LinearAGState()

    def reset(self) -> None:
        self.latch.reset()
        self.state = LinearAGState()

    def predicted(self, step: int, total: int) -> bool:
        if total != self.fitted_steps:
            raise ConfigError(
                f"the LinearAG coefficients were fitted for {self.fitted_steps} steps, the pipeline runs "
                f"{total}; calibrate again for this step count"
            )
        start = self.history_len
        if step < start or step >= self.config.predict_until * total or step not in self.weights:
            return False
        if (step - start) % self.config.predict_every:
            return False
        return all((step - k) in self.state.history for k in range(1, self.history_len + 1))

    def modes(self, info: CallInfo, samples: int) -> list[Uncond]:
        step = info.step_index
        if self.predicted(step, info.num_inference_steps):
            if step not in self.state.predicted_steps:
                self.state.predicted_steps.append(step)
            return [Uncond.PREDICT] * samples
        return self.latch.modes(info, samples)

    def observe(self, step: int, cond: torch.Tensor, uncond: torch.Tensor, modes: list[Uncond]) -> None:
        self.state.history[step] = (cond.detach(), uncond.detach())
        for old in [s for s in self.state.history if s < step - self.history_len]:
            del self.state.history[old]
        self.latch.observe(step, cond, uncond, modes)

    def predict_uncond(self, step: int, sample: int, cond: torch.Tensor) -> torch.Tensor:
        w = self.weights[step]
        out = w[0] * cond.float() + w[-1]
        for k in range(1, self.history_len + 1):
            past_cond, past_uncond = self.state.history[step - k]
            out = out + w[2 * k - 1] * past_cond[sample].float() + w[2 * k] * past_uncond[sample].float()
        return out

    def stats(self) -> dict[str, Any]:
        return {**self.latch.stats(), "predicted_steps": list(self.state.predicted_steps)}


@register_plugin
class LinearAGPlugin(Plugin):
    config_cls = LinearAGConfig
    name = "linear_ag"
    kinds = frozenset({"unet", "image_dit", "video_dit"})
    claims = frozenset({"cfg_batch"})
    # not in the demo (it needs per-model coefficients); in accel tune, a mode of the guidance group with
    # these genes, where coefficients were calibrated
    facts = PluginFacts(
        key="linear_ag", title="LinearAG", genes=(Gene("every", (2, 3)), Gene("until", (0.5, 0.3, 0.7))), order=5
    )

    def __init__(self, config: LinearAGConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        data = load_coefficients(config.coefficients)
        self.fitted_for = {key: data.get(key) for key in ("denoiser", "scheduler", "guidance_scale")}
        self.policy = LinearAGPolicy(config, data)

    def attach(self) -> None:
        denoiser = self.session.denoiser
        mismatch = fingerprint_mismatch(self.fitted_for["denoiser"] or {}, denoiser_fingerprint(denoiser), denoiser)
        if mismatch is not None and mismatch.kind == "architecture":
            raise ConfigError(
                f"these LinearAG coefficients do not fit this model: {mismatch}; calibrate again for this "
                "model (accel calibrate-linear-ag)"
            )
        if mismatch is not None:  # the affine estimate still applies; how well was measured on other weights
            warn_once(
                denoiser,
                mismatch.message,
                f"these LinearAG coefficients were fitted on other weights: {mismatch}; calibrate again for "
                "this checkpoint (accel calibrate-linear-ag) for estimates fitted to it",
            )
        hook = GuidanceHook(self.session.context, self.session.adapter, self.policy)
        self.session.register_hook(self.session.denoiser, hook, self.hook_name())

    def on_generation_start(self) -> None:
        self.policy.reset()
        pipe = self.session.context.pipeline
        if pipe is None:
            return
        scheduler = type(getattr(pipe, "scheduler", None)).__name__
        if scheduler != self.fitted_for["scheduler"]:
            raise ConfigError(
                f"the LinearAG coefficients were fitted with {self.fitted_for['scheduler']}, the pipeline now uses "
                f"{scheduler}; calibrate again with this scheduler"
            )
        scale = getattr(pipe, "_guidance_scale", None)
        fitted_scale = self.fitted_for["guidance_scale"]
        if (
            scale is not None
            and float(scale) > 1
            and fitted_scale is not None
            and not math.isclose(float(scale), float(fitted_scale))
        ):
            raise ConfigError(
                f"the LinearAG coefficients were fitted at guidance scale {fitted_scale}, this call uses {scale}; "
                "calibrate again at this guidance scale"
            )

    def stats(self) -> dict[str, Any]:
        return self.policy.stats()


# ------------------------------------------------------------------------------- prediction
def features(
    step: int, conds: dict[int, torch.Tensor], unconds: dict[int, torch.Tensor], history: int
) -> torch.Tensor:
    """Regression design matrix for one step: columns ``c_t, c_{t-1}, u_{t-1}, ..., 1`` over all elements."""
    cols = [conds[step].flatten()]
    for k in range(1, history + 1):
        cols += [conds[step - k].flatten(), unconds[step - k].flatten()]
    cols.append(torch.ones_like(cols[0]))
    return torch.stack(cols, dim=1).double()


def apply_linear_ag(module: Any, config: LinearAGConfig, **kwargs: Any):
    """diffusers-style entry point: ``apply_linear_ag(pipe, LinearAGConfig(coefficients=path))``."""
    from ..api import apply

    return apply(module, config, **kwargs)
