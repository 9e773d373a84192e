"""Sweep specifications for ``accel eval`` (YAML or JSON).

A sweep is one model, one sampler setting, a prompt set and a grid of plugin configs::

    model: sd-digits            # built-in name, hub id or local path
    device: auto                # auto (the accelerate process's device, else CUDA, else CPU), cpu, cuda:1
    dtype: auto                 # auto (bfloat16 on CUDA, float32 elsewhere), float32, bfloat16, float16
    scheduler: null             # optional diffusers scheduler class to swap in
    steps: 20
    guidance_scale: 2.0
    prompts: builtin            # or a .txt / .csv file
    seeds_per_prompt: 2
    fewer_steps: auto           # the fewer-steps baseline curve: auto, or a list of step counts
    schedules: null             # optional folder of searched schedules: a second rival curve
    solver: null                # optional solver (dpmsolver++, unipc, ...): a third rival curve
    configs:
      - none                    # the baseline (always run, whether listed or not)
      - {type: DeepCacheConfig, interval: 3}
      - [{type: DeepCacheConfig, interval: 3}, {type: AdaptiveGuidanceConfig, threshold: 0.99}]
      - {steps: 10, configs: [{type: DeepCacheConfig, interval: 2}]}   # a stack on fewer steps

A file may hold several sweeps under ``sweeps:``. Configs are data: they are built from their
dataclass fields and validated, never evaluated as code.

Every field is checked when the spec is built (type, range, that the model folder, prompt file and
scheduler exist, that ``num_prompts`` fits the prompt set), so a bad spec stops before any folder is
created or any model loaded; :func:`load_specs` names the file (and the sweep) in the error. Duplicate
keys in a YAML or JSON file are an error, not "the last one wins".
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from ..config import PluginConfig, check_choice, check_float, check_int
from ..errors import AccelError, ConfigError, NotFoundError
from ..files import brief, read_data, read_json
from ..pipelines.builtin import BUILTIN_MODELS
from .prompts import load_prompts

METRICS = ("fidelity", "domain", "clip", "fid_inception", "lpips", "image_reward")

MAX_STEPS = 10_000
MAX_SEED = 2**32 - 1
MAX_SIDE = 16_384
MAX_GUIDANCE = 100
#: A run folder name: one path component, no leading dot.
FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=-]{0,127}\Z")
FOLDER_NAME_TEXT = "a plain folder name (letters, digits, '_', '.', '+', '=', '-'; no '/', not starting with '.')"
#: A hub id ``org/name``; anything else that is not a built-in name must be an existing local folder.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*\Z")
#: Pipeline arguments accel eval sets itself, and what to use instead.
RESERVED_CALL = {
    "prompt": "prompts come from `prompts`",
    "num_inference_steps": "use `steps`",
    "generator": "seeds come from `base_seed` and `seeds_per_prompt`",
    "output_type": "accel eval saves tensors as PNGs",
    "num_images_per_prompt": "each call makes one sample; use `seeds_per_prompt`",
    "return_dict": "accel eval reads the pipeline output",
}


@dataclasses.dataclass
class SweepSpec:
    model: str
    steps: int = 20
    guidance_scale: float | None = None
    scheduler: str | None = None
    prompts: str = "builtin"
    num_prompts: int | None = None
    seeds_per_prompt: int = 2
    base_seed: int = 0
    fewer_steps: Any = "auto"
    #: a folder of searched timestep schedules (``accel schedule``: ``schedule_<N>.json``); fewer steps on
    #: them form a second, stronger rival curve, and verdicts are taken against the better of the two
    schedules: str | None = None
    #: a solver (``accel.SolverConfig``: ``dpmsolver++``, ``unipc``, ...); fewer steps with it form a third
    #: rival curve (``python -m benchmarks.solvers`` says which is strongest for a model)
    solver: str | None = None
    configs: list[Any] = dataclasses.field(default_factory=lambda: ["none"])
    call: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: list[str] | None = None
    clip_model: str | None = None
    inception_weights: str | None = None
    name: str | None = None
    device: str = "auto"  # "auto": this process's accelerate device, else CUDA if available, else the CPU
    dtype: str = "auto"  # "auto": bfloat16 on CUDA, float32 elsewhere; or float32, bfloat16, float16

    def __post_init__(self) -> None:
        """Check every field (type, range, existence) now, before any file is written or model loaded."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(
                f"sweep.model must be a built-in model name ({', '.join(BUILTIN_MODELS)}), a hub id 'org/name' "
                f"or a local pipeline folder, got {brief(self.model)}"
            )
        self._check_name()
        check_int("sweep", "steps", self.steps, 1, MAX_STEPS)
        check_float("sweep", "guidance_scale", self.guidance_scale, 0, MAX_GUIDANCE, allow_none=True)
        check_int("sweep", "seeds_per_prompt", self.seeds_per_prompt, 1, 1000)
        check_int("sweep", "base_seed", self.base_seed, 0, MAX_SEED)
        self._check_fewer_steps()
        self._check_schedules()
        if self.solver is not None:
            from ..sampling.solver import SOLVERS

            check_choice("sweep", "solver", self.solver, SOLVERS)
        self._check_metrics()
        for field in ("clip_model", "inception_weights"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"sweep.{field} must be a non-empty string or null, got {brief(value)}")
        if self.inception_weights is not None and not os.path.isfile(self.inception_weights):
            raise NotFoundError(f"sweep.inception_weights: no such file {brief(self.inception_weights)}")
        self._check_device()
        self._check_model()
        self._check_scheduler()
        self._check_call()
        self._check_prompts()
        self._check_configs()

    # ------------------------------------------------------------------ checks
    def _check_name(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not FOLDER_NAME.match(self.name)):
            raise ConfigError(f"sweep.name must be {FOLDER_NAME_TEXT}, got {brief(self.name)}")
        if self.name is None and not FOLDER_NAME.match(self.run_name):
            raise ConfigError(
                f"sweep.name: the run folder name {brief(self.run_name)} taken from the model is not "
                f"{FOLDER_NAME_TEXT}; set `name`"
            )

    def _check_fewer_steps(self) -> None:
        if self.fewer_steps == "auto":
            return
        if not isinstance(self.fewer_steps, list):
            raise ConfigError(
                f"sweep.fewer_steps must be 'auto' or a list of step counts in [1, {self.steps - 1}], "
                f"got {brief(self.fewer_steps)}"
            )
        for count in self.fewer_steps:
            check_int("sweep", "fewer_steps[]", count, 1, self.steps - 1)

    def _check_schedules(self) -> None:
        if self.schedules is None:
            return
        if not isinstance(self.schedules, str) or not os.path.isdir(self.schedules):
            raise NotFoundError(
                f"sweep.schedules must be a folder of searched schedules (accel schedule MODEL --steps N --out "
                f"DIR), got {brief(self.schedules)}"
            )
        for _, path in self.schedule_files():
            from ..sampling.timestep_schedule import TimestepScheduleConfig

            TimestepScheduleConfig.load(path)  # data, checked now

    def schedule_files(self) -> list[tuple[int, str]]:
        """``(steps, file)`` of each fewer-steps count that has a searched schedule in ``schedules``."""
        if self.schedules is None:
            return []
        paths = ((k, os.path.join(self.schedules, f"schedule_{k}.json")) for k in self.fewer_step_counts())
        return [(k, path) for k, path in paths if os.path.isfile(path)]

    def _check_metrics(self) -> None:
        if self.metrics is not None and not (
            isinstance(self.metrics, list) and all(isinstance(m, str) for m in self.metrics)
        ):
            raise ConfigError(
                f"sweep.metrics must be a list of metric names from {list(METRICS)}, got {brief(self.metrics)}"
            )
        for metric in self.metric_names():
            if metric not in METRICS:
                raise ConfigError(f"sweep.metrics: unknown metric {brief(metric)}; allowed: {list(METRICS)}")

    def _check_device(self) -> None:
        import torch

        from ..devices import DTYPE_CHOICES

        if self.dtype not in DTYPE_CHOICES:
            raise ConfigError(f"sweep.dtype must be one of {list(DTYPE_CHOICES)}, got {brief(self.dtype)}")
        if not isinstance(self.device, str):
            raise ConfigError(
                f"sweep.device must be 'auto' or a torch device string ('cpu', 'cuda:0'), got {brief(self.device)}"
            )
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError(
                    f"sweep.device must be 'auto' or a torch device string ('cpu', 'cuda:0'), got {brief(self.device)}"
                ) from None

    def _check_model(self) -> None:
        pipelines = ", ".join(n for n, m in BUILTIN_MODELS.items() if m.kind != "classifier")
        allowed = (
            f"allowed: a built-in model ({pipelines}), a hub id 'org/name' or an existing diffusers pipeline folder"
        )
        builtin = BUILTIN_MODELS.get(self.model)
        if builtin is not None:
            if builtin.kind == "classifier":
                raise ConfigError(
                    f"sweep.model: {brief(self.model)} is a classifier, not a diffusion pipeline; {allowed}"
                )
            if not builtin.is_trained():
                raise NotFoundError(
                    f"sweep.model: built-in model {brief(self.model)} has no weights at {builtin.path}; "
                    f"train it with `accel train {self.model}`"
                )
            return
        path = os.path.expanduser(self.model)
        if os.path.isdir(path):
            if not os.path.isfile(os.path.join(path, "model_index.json")):
                raise ConfigError(
                    f"sweep.model: {brief(self.model)} has no model_index.json (not a pipeline folder); {allowed}"
                )
            return
        if HUB_ID.match(self.model) and not os.path.exists(path):
            return  # a hub id: loaded (or downloaded) with the pipeline
        raise NotFoundError(f"sweep.model: no such directory {brief(self.model)}; {allowed}")

    def _check_scheduler(self) -> None:
        if self.scheduler is None:
            return
        import diffusers

        cls = getattr(diffusers, self.scheduler, None) if isinstance(self.scheduler, str) else None
        if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
            raise ConfigError(
                f"sweep.scheduler must be null or a diffusers scheduler class name such as 'DDIMScheduler' or "
                f"'FlowMatchEulerDiscreteScheduler', got {brief(self.scheduler)}"
            )

    def _check_call(self) -> None:
        check_call(self.call, self.model, "sweep")
        if "guidance_scale" in self.call and self.guidance_scale is not None:
            raise ConfigError("sweep.guidance_scale and sweep.call.guidance_scale are both set; keep one")

    def _check_prompts(self) -> None:
        if not isinstance(self.prompts, str) or not self.prompts:
            raise ConfigError(f"sweep.prompts must be 'builtin' or a .txt / .csv file, got {brief(self.prompts)}")
        try:
            count = len(load_prompts(self.prompts, self.model))
        except AccelError as exc:
            raise type(exc)(f"sweep.prompts ('builtin' or a .txt / .csv file): {exc}") from exc
        try:
            check_int("sweep", "num_prompts", self.num_prompts, 1, count, allow_none=True)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc} (the prompt set {brief(self.prompts)} holds {count}; null: all of them)"
            ) from None

    def _check_configs(self) -> None:
        if not isinstance(self.configs, list):
            raise ConfigError(
                "sweep.configs must be a list of grid entries ('none', {type: ..., field: ...} or a list of those), "
                f"got {brief(self.configs)}"
            )
        names: list[str] = []
        for index, entry in enumerate(self.configs):
            try:
                steps, configs = parse_entry(entry, self.steps)  # validates every config now
            except AccelError as exc:
                raise type(exc)(f"sweep.configs[{index}]: {exc}") from exc
            if configs:
                names.append(entry_name(steps, configs, self.steps))
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(
                f"sweep.configs: two grid entries share the name {brief(repeated[0])}; list each setting once"
            )

    # ------------------------------------------------------------------ derived
    @property
    def run_name(self) -> str:
        return self.name or os.path.basename(self.model.rstrip("/")).replace("/", "_")

    @property
    def builtin(self) -> bool:
        return self.model in BUILTIN_MODELS

    def metric_names(self) -> list[str]:
        if self.metrics is not None:
            return list(self.metrics)
        return ["fidelity", "domain"] if self.model in BUILTIN_MODELS else ["fidelity"]

    def prompt_list(self) -> list[str]:
        """The prompts this sweep runs: the prompt set, cut to ``num_prompts``."""
        prompts = load_prompts(self.prompts, self.model)
        return prompts[: self.num_prompts] if self.num_prompts else prompts

    def fewer_step_counts(self) -> list[int]:
        if self.fewer_steps == "auto":
            counts = {max(1, round(self.steps * f)) for f in (0.25, 0.4, 0.5, 0.65, 0.8)}
            return sorted(c for c in counts if c < self.steps)
        return sorted(set(self.fewer_steps))

    def plugin_sets(self) -> list[tuple[int, list[PluginConfig], str | None]]:
        """Every non-baseline grid entry as ``(steps, validated plugin configs, its own name or None)``."""
        out = []
        for entry in self.configs:
            steps, configs = parse_entry(entry, self.steps)
            if configs:
                out.append((steps, configs, entry_label(entry)))
        return out

    def call_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the pipeline call (model defaults, then the sweep's)."""
        kwargs = dict(BUILTIN_MODELS[self.model].call_defaults) if self.builtin else {}
        kwargs.update(self.call)
        kwargs["num_inference_steps"] = self.steps
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_call(call: Any, model: str, owner: str) -> None:
    """Check pipeline call arguments (a sweep's ``call:``, ``accel tune --call``): a mapping of argument
    names, none of those accel sets itself, sizes and guidance in range, and every name an argument of
    the model's pipeline (when that can be read without loading it)."""
    if not isinstance(call, dict) or not all(isinstance(k, str) for k in call):
        raise ConfigError(f"{owner}.call must be a mapping of pipeline argument names to values, got {brief(call)}")
    for key, value in call.items():
        if key in RESERVED_CALL:
            raise ConfigError(f"{owner}.call.{key} is set by accel itself ({RESERVED_CALL[key]})")
        if key in ("height", "width"):
            check_int(owner, f"call.{key}", value, 1, MAX_SIDE)
        elif key == "num_frames":
            check_int(owner, f"call.{key}", value, 1, MAX_STEPS)
        elif key == "guidance_scale":
            check_float(owner, "call.guidance_scale", value, 0, MAX_GUIDANCE)
    accepted = call_parameters(model)
    unknown = sorted(set(call) - accepted) if accepted is not None else []
    if unknown:
        raise ConfigError(
            f"{owner}.call: {brief(unknown)} are not arguments of {brief(model)}'s pipeline; allowed: "
            f"{sorted(accepted - set(RESERVED_CALL))}"
        )


def pipeline_class(model: Any) -> type | None:
    """The pipeline class of a pipeline object, a built-in model name or a local pipeline folder, read
    without loading it (None when it cannot be told, e.g. a hub id not yet downloaded)."""
    import diffusers

    if not isinstance(model, str):
        return type(model)
    builtin = BUILTIN_MODELS.get(model)
    if builtin is not None:
        class_name = builtin.pipeline_class
    else:
        try:
            class_name = read_json(os.path.join(os.path.expanduser(model), "model_index.json"), "model_index.json")
            class_name = class_name.get("_class_name") if isinstance(class_name, dict) else None
        except AccelError:
            return None
    cls = getattr(diffusers, class_name, None) if isinstance(class_name, str) else None
    return cls if isinstance(cls, type) else None


def _call_signature(model: Any) -> list[Any] | None:
    import inspect

    cls = pipeline_class(model)
    if cls is None:
        return None
    try:
        return list(inspect.signature(cls.__call__).parameters.values())
    except (TypeError, ValueError):
        return None


def call_parameters(model: Any) -> set[str] | None:
    """The keyword arguments the model's pipeline class accepts, read without loading it (None: unknown,
    or the pipeline takes ``**kwargs``)."""
    parameters = _call_signature(model)
    if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.name != "self"}


def call_default(model: Any, name: str) -> Any:
    """The default of the pipeline call's argument ``name`` (``guidance_scale``, ``height``), or None."""
    for parameter in _call_signature(model) or []:
        if parameter.name == name and parameter.default is not parameter.empty:
            return parameter.default
    return None


def parse_entry(entry: Any, steps: int) -> tuple[int, list[PluginConfig]]:
    """A grid entry -> ``(steps, configs)``. Besides what :func:`parse_configs` reads, an entry may run
    its own step count: ``{steps: 10, configs: [...]}`` (a plugin stack on fewer steps, as in a plan
    from ``accel tune``); ``steps`` must be in [1, the sweep's steps]."""
    if isinstance(entry, dict) and "type" not in entry:
        unknown = sorted(set(entry) - {"steps", "configs", "name"})
        if unknown or "configs" not in entry:
            raise ConfigError(
                "a grid entry is 'none', a config {type: ..., field: ...}, a list of configs, or "
                f"{{steps: N, configs: [...], name: optional}}; got the keys {sorted(entry)}"
            )
        entry_label(entry)  # validated with the rest
        own = entry.get("steps", steps)
        check_int("grid entry", "steps", own, 1, steps)
        configs = parse_configs(entry["configs"])
        if not configs:
            raise ConfigError(
                "a {steps: N, configs: [...]} entry needs at least one plugin config; plain fewer steps go in "
                "`fewer_steps`"
            )
        return own, configs
    return steps, parse_configs(entry)


def entry_label(entry: Any) -> str | None:
    """The ``name`` a ``{steps, configs, name}`` entry gives itself (a run-folder name: letters, digits,
    ``.``, ``_``, ``+``, ``-``; at most 80), or None."""
    name = entry.get("name") if isinstance(entry, dict) and "type" not in entry else None
    if name is None:
        return None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,79}", name):
        raise ConfigError(
            "a grid entry's name must be 1-80 letters, digits, '.', '_', '+' or '-' (a folder name), "
            f"got {brief(name)}"
        )
    return name


def entry_name(steps: int, configs: list[PluginConfig], sweep_steps: int) -> str:
    """The run-folder name of a grid entry: its configs, prefixed with ``stepsN+`` on fewer steps."""
    name = "+".join(str(c) for c in configs)
    return name if steps == sweep_steps else f"steps{steps}+{name}"


def parse_configs(entry: Any) -> list[PluginConfig]:
    """``"none"``, a config dict ``{type: ..., field: ...}``, or a list of them -> plugin configs."""
    from ..plugin import config_from_dict

    if entry in (None, "none", "baseline"):
        return []
    if isinstance(entry, PluginConfig):
        return [entry]
    if isinstance(entry, list):
        return [c for item in entry for c in parse_configs(item)]
    if not isinstance(entry, dict) or "type" not in entry:
        raise ConfigError(f"a sweep config must be 'none' or a mapping with a 'type' key, got {brief(entry)}")
    return [config_from_dict(entry)]


def load_specs(path: str) -> list[SweepSpec]:
    """Read one or several sweeps from a YAML or JSON file; every error names the file (and the sweep).
    The file is data: read with size, depth and alias limits (:mod:`accel.files`)."""
    return specs_from_data(read_data(path, "sweep spec"), source=path)


def specs_from_data(raw: Any, source: str | None = None) -> list[SweepSpec]:
    """Sweeps from parsed data (a mapping, a list, or ``{sweeps: [...]}``); errors name ``source`` if given."""
    if isinstance(raw, dict) and "sweeps" in raw:
        items = raw["sweeps"]
    elif isinstance(raw, list):
        items = raw
    else:
        items = [raw]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source or 'sweeps'}: 'sweeps' must be a non-empty list of sweeps")
    specs = []
    names = {f.name for f in dataclasses.fields(SweepSpec)}
    for index, item in enumerate(items):
        where = ", ".join(p for p in (source, f"sweep {index + 1} of {len(items)}" if len(items) > 1 else None) if p)
        try:
            if not isinstance(item, dict):
                raise ConfigError(f"a sweep must be a mapping, got {type(item).__name__}")
            unknown = sorted(set(item) - names, key=str)
            if unknown:
                raise ConfigError(f"unknown sweep field(s) {brief(unknown)}; allowed: {sorted(names)}")
            specs.append(SweepSpec(**item))
        except AccelError as exc:
            if not where:
                raise
            raise type(exc)(f"{where}: {exc}") from exc
    check_run_names(specs, source)
    return specs


def check_run_names(specs: list[SweepSpec], source: str | None = None) -> None:
    """Two sweeps of one call must not share a run folder (the second would be refused after the first ran)."""
    seen: dict[str, int] = {}
    for index, spec in enumerate(specs):
        if not isinstance(spec, SweepSpec):
            raise ConfigError(f"expected SweepSpec objects, got {type(spec).__name__}")
        if spec.run_name in seen:
            raise ConfigError(
                f"{source + ': ' if source else ''}sweeps {seen[spec.run_name] + 1} and {index + 1} would share the "
                f"same run folder {brief(spec.run_name)}; give each a different `name`"
            )
        seen[spec.run_name] = index
