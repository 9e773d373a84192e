"""Tuned plans: the quality-speed front ``accel tune`` found for one model, as data a user applies in one line.

    plan = accel.load_plan("runs/tune-sd3/plan.json")
    setting = plan.pick(speedup=3)          # or plan.pick(min_psnr=35)
    accel.apply(pipe, *setting.configs)
    pipe(prompt, num_inference_steps=setting.num_inference_steps)

A plan is JSON (format ``accel-plan/2``): the model (class, config, a sketch of its weights),
scheduler, step count, guidance, call arguments and latent size it was tuned for, what the tune ran
on (device, dtype, versions), and one entry per front member with its plugin configs, its step
count, and the quality and cost it promised on calibration prompts and delivered on held-out ones.
Every setting's configs end with a :class:`PlanTargetConfig`, which checks at apply and at each call
that the pipeline is the one tuned.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from typing import TYPE_CHECKING, Any

import torch
from diffusers.hooks import ModelHook

from .compiling import eager
from .config import PluginConfig, check_float, check_int, check_int_tuple, check_str, field_of
from .errors import AccelError, ConfigError, NotFoundError
from .files import brief, read_json, resolve_inside, write_json
from .fingerprint import check_sketch, denoiser_fingerprint, fingerprint_mismatch, warn_once
from .plugin import ALL_KINDS, Plugin, config_from_dict, register_plugin, registered_configs

if TYPE_CHECKING:
    from .session import DenoiserSession

FORMAT = "accel-plan/2"
#: Speedups within this fraction of each other count as equal: an adaptive stack's FLOP ratio moves by a
#: few percent from one prompt to the next, so a 1% faster setting that is 6 dB worse is no real choice.
SPEED_TOLERANCE = 0.02


@dataclasses.dataclass(frozen=True)
class PlanTargetConfig(PluginConfig):
    """What a tuned setting was tuned for. It changes nothing in the computation; applied with the
    setting's other configs, it checks that the pipeline is the one tuned:

    * another denoiser class or config, or another scheduler class: refused at apply;
    * another step count or guidance scale: refused at each call;
    * other weights of the same architecture (a fused LoRA, a fine-tune) or another latent size (the
      call's height, width or frames): one warning naming the difference, and ``accel.summary`` says
      so, because the plan's quality figures were measured on the tuned weights and size. With
      ``strict=True`` these are refused too.
    """

    short_prefix = "plan"
    model: str = ""
    denoiser: tuple[tuple[str, Any], ...] = ()
    scheduler: str = ""
    num_inference_steps: int = 1
    guidance_scale: float | None = None
    latent_shape: tuple[int, ...] | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        check_int("PlanTargetConfig", "num_inference_steps", self.num_inference_steps, 1, 100_000)
        fields = dict(self.denoiser)
        if set(fields) != {"class", "config_sha256", "weights"}:
            raise ConfigError(
                "PlanTargetConfig.denoiser must hold the tuned denoiser's class, config_sha256 and weights "
                f"(accel.fingerprint.denoiser_fingerprint), got {brief(sorted(fields))}"
            )
        check_sketch("PlanTargetConfig.denoiser", fields["weights"])
        check_float("PlanTargetConfig", "guidance_scale", self.guidance_scale, 0, 1000, allow_none=True)
        if self.latent_shape is not None:
            check_int_tuple("PlanTargetConfig", "latent_shape", self.latent_shape, 1, 10_000_000)
        if not isinstance(self.strict, bool):
            raise ConfigError(f"PlanTargetConfig.strict must be true or false, got {brief(self.strict)}")

    def __str__(self) -> str:
        return f"plan_{self.model}_steps{self.num_inference_steps}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PluginConfig:
        data = dict(data)
        if isinstance(data.get("denoiser"), dict):
            data["denoiser"] = tuple(sorted(data["denoiser"].items()))
        return super().from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["denoiser"] = dict(self.denoiser)
        return out


@register_plugin
class PlanTargetPlugin(Plugin):
    config_cls = PlanTargetConfig
    name = "plan_target"
    kinds = ALL_KINDS - {"vit"}
    needs_pipeline = True

    def __init__(self, config: PlanTargetConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self.weights_differ = False
        self.latent_shape_seen: tuple[int, ...] | None = None

    def attach(self) -> None:
        config = self.config
        denoiser = self.session.denoiser
        mismatch = fingerprint_mismatch(dict(config.denoiser), denoiser_fingerprint(denoiser), denoiser)
        self.weights_differ = mismatch is not None
        if mismatch is not None and (mismatch.kind == "architecture" or config.strict):
            raise ConfigError(
                f"this plan was tuned for {config.model!r} and does not fit this pipeline: {mismatch}; "
                "tune this model with `accel tune`" + ("" if mismatch.kind == "architecture" else " (strict=True)")
            )
        if mismatch is not None:
            warn_once(
                denoiser,
                mismatch.message,
                f"this plan was tuned for {config.model!r}, but {mismatch}; its quality figures were measured on "
                "the tuned weights (load_plan(..., strict=True) refuses instead)",
            )
        self._check_scheduler()
        self.session.register_hook(self.session.denoiser, StepCountCheck(self), self.hook_name())

    def _check_scheduler(self) -> None:
        pipe = self.session.context.pipeline
        found = type(getattr(pipe, "scheduler", None)).__name__
        # a solver plugin's scheduler stands in for the one the plan was tuned on (the setting's own choice)
        replaced, stand_in = getattr(pipe, "_accel_scheduler_stand_in", None) or (None, None)
        if found == stand_in:
            found = replaced
        if found != self.config.scheduler:
            raise ConfigError(
                f"this plan was tuned with the {self.config.scheduler} scheduler, the pipeline uses {found}; "
                "tune again with this scheduler (accel tune)"
            )

    def on_generation_start(self) -> None:
        self._check_scheduler()
        expected = self.config.guidance_scale
        scale = getattr(self.session.context.pipeline, "_guidance_scale", None)
        if expected is not None and scale is not None and not math.isclose(float(scale), float(expected)):
            raise ConfigError(
                f"this plan was tuned at guidance scale {expected:g}, this call uses {float(scale):g}; pass "
                f"guidance_scale={expected:g} or tune again"
            )

    def check_call(self, steps: int | None) -> None:
        """At the first denoiser call of a generation: the step count, and the latent size."""
        if steps is not None and steps != self.config.num_inference_steps:
            raise ConfigError(
                f"this plan setting was tuned for num_inference_steps={self.config.num_inference_steps}, the "
                f"pipeline runs {steps}; pass num_inference_steps=setting.num_inference_steps"
            )
        tuned, found = self.config.latent_shape, self.session.context.latent_shape
        if tuned is None or found is None or tuple(found) == tuple(tuned):
            return
        self.latent_shape_seen = tuple(found)
        text = (
            f"this plan was tuned for {self.config.model!r} at latents of shape {tuple(tuned)} per sample, this "
            f"call makes {tuple(found)} (another height, width or frame count)"
        )
        if self.config.strict:
            raise ConfigError(f"{text}; call at the tuned size, or tune at this one (strict=True)")
        warn_once(self.session.denoiser, text, f"{text}; the plan's quality and speed figures hold at the tuned size")

    def stats(self) -> dict[str, Any]:
        out = {"tuned_for": self.config.model, "num_inference_steps": self.config.num_inference_steps}
        if self.weights_differ:
            out["weights"] = "differ from the tuned ones"
        if self.latent_shape_seen is not None:
            out["latent_shape"] = f"{self.latent_shape_seen}, tuned at {tuple(self.config.latent_shape)}"
        return out


class StepCountCheck(ModelHook):
    """Checks, once per generation, that the pipeline runs the step count and size the setting was tuned for."""

    def __init__(self, plugin: PlanTargetPlugin) -> None:
        super().__init__()
        self.plugin = plugin
        self.checked_generation = -1

    @eager
    def _check(self) -> None:
        info = self.plugin.session.context.current
        if info is not None and info.generation != self.checked_generation:
            self.checked_generation = info.generation
            self.plugin.check_call(info.num_inference_steps)

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        self._check()
        return args, kwargs


@dataclasses.dataclass(frozen=True)
class PlanSetting:
    """One front member: apply ``configs`` and run ``num_inference_steps`` steps.

    ``speedup`` is the denoiser FLOP speedup over the full-step baseline on held-out prompts;
    ``quality`` holds the promised (calibration) and validated (held-out) metrics, ``wall_speedup``
    the paired wall-clock speedup measured when the plan was tuned."""

    configs: tuple[PluginConfig, ...]
    num_inference_steps: int
    speedup: float
    quality: dict[str, Any]
    wall_speedup: float | None = None

    @property
    def psnr(self) -> float:
        return float(self.quality["validated"]["psnr"])

    @property
    def plugins(self) -> tuple[PluginConfig, ...]:
        """The acceleration plugins alone (without the plan's target check)."""
        return tuple(c for c in self.configs if not isinstance(c, PlanTargetConfig))

    def __str__(self) -> str:
        stack = " + ".join(str(c) for c in self.plugins) or "no plugin"
        return f"{self.num_inference_steps} steps, {stack}: {self.speedup:.2f}x, {self.psnr:.1f} dB"


@dataclasses.dataclass
class Plan:
    """The tuned front of one model (see the module docstring); settings sorted by speedup."""

    model: str
    target: dict[str, Any]
    settings: list[PlanSetting]
    metric: str = "psnr"
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def pick(self, speedup: float | None = None, min_psnr: float | None = None) -> PlanSetting:
        """The setting that meets the request at the least cost.

        ``speedup=s``: the best validated quality among settings at least ``s`` times faster (FLOPs;
        speedups within :data:`SPEED_TOLERANCE` of ``s`` count).
        ``min_psnr=q``: the fastest setting whose validated PSNR is at least ``q`` dB.
        """
        if (speedup is None) == (min_psnr is None):
            raise ConfigError("pick needs exactly one of speedup=... or min_psnr=...")
        low, high = self.settings[0], self.settings[-1]
        if speedup is not None:
            if not isinstance(speedup, (int, float)) or not math.isfinite(speedup) or speedup <= 0:
                raise ConfigError(f"speedup must be a positive number, got {speedup!r}")
            meeting = [s for s in self.settings if s.speedup >= speedup * (1 - SPEED_TOLERANCE)]
            if not meeting:
                raise ConfigError(
                    f"no setting of the {self.model} plan reaches {speedup:g}x; it spans "
                    f"{low.speedup:.2f}x to {high.speedup:.2f}x"
                )
            return max(meeting, key=lambda s: (s.psnr, s.speedup))
        if not isinstance(min_psnr, (int, float)) or not math.isfinite(min_psnr):
            raise ConfigError(f"min_psnr must be a number of dB, got {min_psnr!r}")
        meeting = [s for s in self.settings if s.psnr >= min_psnr]
        if not meeting:
            best = max(s.psnr for s in self.settings)
            raise ConfigError(
                f"no setting of the {self.model} plan reaches {min_psnr:g} dB on held-out prompts; the best "
                f"reaches {best:.2f} dB"
            )
        return max(meeting, key=lambda s: (s.speedup, s.psnr))

    def speedup_range(self) -> tuple[float, float]:
        return self.settings[0].speedup, self.settings[-1].speedup

    # ------------------------------------------------------------------ JSON
    def to_dict(self, base_dir: str | None = None) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "target": self.target,
            "metric": self.metric,
            "info": self.info,
            "settings": [
                {
                    "num_inference_steps": s.num_inference_steps,
                    "speedup": s.speedup,
                    "wall_speedup": s.wall_speedup,
                    "quality": s.quality,
                    "configs": [_relative_paths(c.to_dict(), type(c), base_dir) for c in s.plugins],
                }
                for s in self.settings
            ],
        }

    def save(self, path: str) -> str:
        return write_json(path, self.to_dict(os.path.dirname(os.path.abspath(path))), indent=2)

    def export(self, folder: str) -> str:
        """Write this plan to ``folder/plan.json`` with copies of the files its configs read (LinearAG
        coefficients, schedules) in ``folder/data``: a folder that can be shipped on its own."""
        os.makedirs(os.path.join(folder, "data"), exist_ok=True)
        settings = []
        for setting in self.settings:
            configs = []
            for config in setting.configs:
                changes = {}
                for field in type(config).path_fields:
                    value = getattr(config, field)
                    if isinstance(value, str) and os.path.isfile(value):
                        copy = os.path.join(folder, "data", os.path.basename(value))
                        if os.path.abspath(copy) != os.path.abspath(value):
                            shutil.copyfile(value, copy)
                        changes[field] = os.path.abspath(copy)
                configs.append(config.replace(**changes) if changes else config)
            settings.append(dataclasses.replace(setting, configs=tuple(configs)))
        return dataclasses.replace(self, settings=settings).save(os.path.join(folder, "plan.json"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: str | None = None, strict: bool = False) -> Plan:
        """A plan from its JSON data, every field checked (type, finite numbers, ranges, integers; an
        error names the field). Files its configs name are resolved inside ``base_dir``, the plan's
        folder (see :func:`accel.files.resolve_inside`), as :func:`load_plan` does for every plan file;
        without ``base_dir`` (a plan built in memory) they are taken as given. ``strict``: see
        :func:`load_plan`."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            older = " (an older format: tune again)" if str(found).startswith("accel-plan/") else ""
            raise ConfigError(
                f"not an accel plan (format {FORMAT!r} expected, found {brief(found)}){older}; make one with "
                "accel tune"
            )
        model = field_of("plan", data, "model")
        check_str("plan", "model", model, max_len=200)
        target = _checked_target(field_of("plan", data, "target"))
        metric = field_of("plan", data, "metric", required=False, default="psnr")
        check_str("plan", "metric", metric, max_len=40)
        info = field_of("plan", data, "info", required=False, default={})
        if not isinstance(info, dict):
            raise ConfigError(f"plan.info must be a mapping, got {type(info).__name__}")
        entries = field_of("plan", data, "settings")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"plan.settings must be a non-empty list of settings, got {brief(entries)}")
        settings = [
            _setting_from_dict(entry, f"plan.settings[{i}]", model, target, metric, base_dir, strict)
            for i, entry in enumerate(entries)
        ]
        settings.sort(key=lambda s: s.speedup)
        return cls(model, target, settings, metric, info)


def _checked_target(target: Any) -> dict[str, Any]:
    denoiser = field_of("plan.target", target, "denoiser")
    for key in ("class", "config_sha256"):
        check_str("plan.target.denoiser", key, field_of("plan.target.denoiser", denoiser, key), max_len=200)
    check_sketch("plan.target.denoiser", field_of("plan.target.denoiser", denoiser, "weights"))
    check_str("plan.target", "scheduler", field_of("plan.target", target, "scheduler"), max_len=200)
    guidance = field_of("plan.target", target, "guidance_scale", required=False)
    check_float("plan.target", "guidance_scale", guidance, 0, 1000, allow_none=True)
    steps = field_of("plan.target", target, "num_inference_steps", required=False)
    check_int("plan.target", "num_inference_steps", steps, 1, 100_000, allow_none=True)
    shape = field_of("plan.target", target, "latent_shape", required=False)
    if shape is not None:
        if not isinstance(shape, list):
            raise ConfigError(f"plan.target.latent_shape must be a list of integers, got {brief(shape)}")
        check_int_tuple("plan.target", "latent_shape", tuple(shape), 1, 10_000_000)
    call = field_of("plan.target", target, "call", required=False, default={})
    if not isinstance(call, dict):
        raise ConfigError(f"plan.target.call must be a mapping of pipeline arguments, got {brief(call)}")
    return target


def _setting_from_dict(
    entry: Any, where: str, model: str, target: dict[str, Any], metric: str, base_dir: str | None, strict: bool
) -> PlanSetting:
    steps = field_of(where, entry, "num_inference_steps")
    check_int(where, "num_inference_steps", steps, 1, 100_000)
    speedup = field_of(where, entry, "speedup")
    check_float(where, "speedup", speedup, 0, 10_000, low_inclusive=False)
    wall = field_of(where, entry, "wall_speedup", required=False)
    check_float(where, "wall_speedup", wall, 0, 10_000, allow_none=True, low_inclusive=False)
    quality = field_of(where, entry, "quality")
    for stage in ("promised", "validated"):
        values = field_of(f"{where}.quality", quality, stage)
        if not isinstance(values, dict) or not {"psnr", metric} <= set(values):
            raise ConfigError(
                f"{where}.quality.{stage} must be a mapping that holds {sorted({'psnr', metric})}, got {brief(values)}"
            )
        for name, value in values.items():
            check_float(f"{where}.quality.{stage}", str(name)[:40], value)
    raw_configs = field_of(where, entry, "configs")
    if not isinstance(raw_configs, list):
        raise ConfigError(f"{where}.configs must be a list of plugin configs, got {brief(raw_configs)}")
    plugins = []
    for index, raw in enumerate(raw_configs):
        try:
            plugins.append(config_from_dict(_files_inside(raw, base_dir)))
        except AccelError as exc:
            raise type(exc)(f"{where}.configs[{index}]: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.configs[{index}]: {exc}") from None
    shape = target.get("latent_shape")
    guard = PlanTargetConfig(
        model=model,
        denoiser=tuple(sorted(target["denoiser"].items())),
        scheduler=target["scheduler"],
        num_inference_steps=steps,
        guidance_scale=target.get("guidance_scale"),
        latent_shape=tuple(shape) if shape is not None else None,
        strict=strict,
    )
    return PlanSetting(
        configs=(*plugins, guard),
        num_inference_steps=steps,
        speedup=float(speedup),
        quality=quality,
        wall_speedup=wall,
    )


def distinct_front(settings: list[PlanSetting], metric: str = "psnr") -> list[PlanSetting]:
    """Settings no other one beats on validated ``metric`` at a speedup within :data:`SPEED_TOLERANCE`
    of theirs or more, sorted by speedup."""

    def quality(s: PlanSetting) -> float:
        return float(s.quality["validated"][metric])

    kept = [
        s
        for s in settings
        if not any(
            o is not s and o.speedup >= s.speedup * (1 - SPEED_TOLERANCE) and quality(o) > quality(s) for o in settings
        )
    ]
    return sorted(kept, key=lambda s: s.speedup)


def load_plan(path: str, strict: bool = False) -> Plan:
    """Read a plan written by ``accel tune`` (``DIR/plan.json``, or the folder itself).

    A plan is untrusted data: it is read with size and depth limits, every field is checked, and the
    files its configs name (LinearAG coefficients, schedules) must lie inside the plan's folder.

    Its settings refuse another model architecture, scheduler, step count or guidance scale. Other
    weights of the same architecture (a fused LoRA, a fine-tune) or another latent size (height, width,
    frames) get one warning, and ``accel.summary`` reports them; ``strict=True`` refuses those too."""
    if os.path.isdir(path):
        path = os.path.join(path, "plan.json")
    if not os.path.exists(path):
        raise NotFoundError(f"no plan at {path!r}; `accel tune MODEL --out DIR` writes DIR/plan.json")
    data = read_json(path, "plan")
    try:
        return Plan.from_dict(data, os.path.dirname(os.path.abspath(path)), strict=strict)
    except AccelError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _relative_paths(data: dict[str, Any], cls: type[PluginConfig], base_dir: str | None) -> dict[str, Any]:
    """File fields (``path_fields``) stored relative to the plan's folder, so the folder can move."""
    if base_dir is None:
        return data
    for field in getattr(cls, "path_fields", ()):
        value = data.get(field)
        if isinstance(value, str) and os.path.isfile(value):
            relative = os.path.relpath(os.path.abspath(value), base_dir)
            if relative.startswith(os.pardir):
                raise ConfigError(
                    f"{cls.__name__}.{field} reads {value}, outside the plan's folder {base_dir}; save the plan with "
                    "Plan.export(folder), which copies the files it reads into the folder"
                )
            data[field] = relative
    return data


def _files_inside(data: Any, base_dir: str | None) -> Any:
    """A config dict whose file fields (``path_fields``) are resolved inside the plan's folder. A field
    at its default (``BlockCacheConfig.schedule="fora"``, an empty path) names no file."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for cls in registered_configs():
        if cls.__name__ != data.get("type"):
            continue
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for field in getattr(cls, "path_fields", ()):
            value = data.get(field)
            if value is None or value == defaults.get(field):
                continue
            if base_dir is not None:
                data[field] = resolve_inside(base_dir, value, f"{cls.__name__}.{field}")
    return data


__all__ = ["FORMAT", "SPEED_TOLERANCE", "Plan", "PlanSetting", "PlanTargetConfig", "distinct_front", "load_plan"]
