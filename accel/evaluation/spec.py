"""Sweep specifications for ``accel eval`` (YAML or JSON).

A sweep is one model, one sampler setting, a prompt set and a grid of plugin configs::

    model: sd-digits            # built-in name, hub id or local path
    scheduler: null             # optional diffusers scheduler class to swap in
    steps: 20
    guidance_scale: 2.0
    prompts: builtin            # or a .txt / .csv file
    seeds_per_prompt: 2
    fewer_steps: auto           # the fewer-steps baseline curve: auto, or a list of step counts
    configs:
      - none                    # the baseline (always run, whether listed or not)
      - {type: DeepCacheConfig, interval: 3}
      - [{type: DeepCacheConfig, interval: 3}, {type: AdaptiveGuidanceConfig, threshold: 0.99}]

A file may hold several sweeps under ``sweeps:``. Configs are data: they are built from their
dataclass fields and validated, never evaluated as code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ..config import PluginConfig
from ..errors import ConfigError
from ..pipelines.builtin import BUILTIN_MODELS

METRICS = ("fidelity", "domain", "clip", "fid_inception", "lpips", "image_reward")


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
    configs: list[Any] = dataclasses.field(default_factory=lambda: ["none"])
    call: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: list[str] | None = None
    clip_model: str | None = None
    inception_weights: str | None = None
    name: str | None = None
    device: str = "auto"  # "auto": this process's accelerate device

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("sweep.model must be a built-in model name, a hub id or a local path")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"sweep.steps must be a positive integer, got {self.steps!r}")
        if not isinstance(self.seeds_per_prompt, int) or not 1 <= self.seeds_per_prompt <= 1000:
            raise ConfigError(f"sweep.seeds_per_prompt must be an integer in [1, 1000], got {self.seeds_per_prompt!r}")
        for metric in self.metric_names():
            if metric not in METRICS:
                raise ConfigError(f"unknown metric {metric!r}; allowed: {list(METRICS)}")
        if self.fewer_steps != "auto" and not (
            isinstance(self.fewer_steps, list)
            and all(isinstance(s, int) and 1 <= s < self.steps for s in self.fewer_steps)
        ):
            raise ConfigError(f"sweep.fewer_steps must be 'auto' or a list of step counts in [1, {self.steps - 1}]")
        self.plugin_sets()  # validates every config now, before any generation

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

    def fewer_step_counts(self) -> list[int]:
        if self.fewer_steps == "auto":
            counts = {max(1, round(self.steps * f)) for f in (0.25, 0.4, 0.5, 0.65, 0.8)}
            return sorted(c for c in counts if c < self.steps)
        return sorted(set(self.fewer_steps))

    def plugin_sets(self) -> list[list[PluginConfig]]:
        """Every non-baseline grid entry as a list of validated plugin configs."""
        out = []
        for entry in self.configs:
            configs = parse_configs(entry)
            if configs:
                out.append(configs)
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


def parse_configs(entry: Any) -> list[PluginConfig]:
    """``"none"``, a config dict ``{type: ..., field: ...}``, or a list of them -> plugin configs."""
    from ..plugin import registered_configs

    if entry in (None, "none", "baseline"):
        return []
    if isinstance(entry, PluginConfig):
        return [entry]
    if isinstance(entry, list):
        return [c for item in entry for c in parse_configs(item)]
    if not isinstance(entry, dict) or "type" not in entry:
        raise ConfigError(f"a sweep config must be 'none' or a mapping with a 'type' key, got {entry!r}")
    by_name = {cls.__name__: cls for cls in registered_configs()}
    cls = by_name.get(entry["type"])
    if cls is None:
        raise ConfigError(f"unknown config type {entry['type']!r}; known: {sorted(by_name)}")
    return [cls.from_dict(entry)]


def load_specs(path: str) -> list[SweepSpec]:
    """Read one or several sweeps from a YAML or JSON file."""
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    return specs_from_data(raw)


def specs_from_data(raw: Any) -> list[SweepSpec]:
    if isinstance(raw, dict) and "sweeps" in raw:
        items = raw["sweeps"]
    elif isinstance(raw, list):
        items = raw
    else:
        items = [raw]
    specs = []
    names = {f.name for f in dataclasses.fields(SweepSpec)}
    for item in items:
        if not isinstance(item, dict):
            raise ConfigError(f"a sweep must be a mapping, got {type(item).__name__}")
        unknown = sorted(set(item) - names)
        if unknown:
            raise ConfigError(f"unknown sweep field(s) {unknown}; allowed: {sorted(names)}")
        specs.append(SweepSpec(**item))
    return specs
