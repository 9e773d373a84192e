"""The default sweep of ``accel eval`` (the README's main command): every built-in diffusion model
that has weights, with every plugin that supports it. It is small enough for the whole main command,
install included, to finish within 5 minutes on 2 CPU cores; about 2 minutes of that is the sweep.
Few samples give wide intervals, so more verdicts are ties: a spec with more prompts
(``accel eval SPEC.yaml``) gives firm ones. Verdicts are judged on FLOPs (see ``accel eval --speed``)."""

from __future__ import annotations

from ..pipelines.builtin import BUILTIN_MODELS
from ..plugin import registered_configs
from .spec import SweepSpec

#: Per model, the grid entries to try when their config class exists (name -> list of grid entries).
CANDIDATES: dict[str, dict[str, list]] = {
    "sd-digits": {
        "DeepCacheConfig": [
            {"type": "DeepCacheConfig", "interval": 2},
            {"type": "DeepCacheConfig", "interval": 3},
            {"type": "DeepCacheConfig", "interval": 5},
        ],
        "AdaptiveGuidanceConfig": [
            {"type": "AdaptiveGuidanceConfig", "threshold": 0.99},
            {"type": "AdaptiveGuidanceConfig", "threshold": 0.95},
        ],
    },
    "pixart-shapes": {
        "BlockCacheConfig": [
            {"type": "BlockCacheConfig", "schedule": "fora", "interval": 2},
            {"type": "BlockCacheConfig", "schedule": "fora", "interval": 3},
        ],
        "AdaptiveGuidanceConfig": [{"type": "AdaptiveGuidanceConfig", "threshold": 0.99}],
    },
    "sd3-shapes": {
        "RASConfig": [{"type": "RASConfig", "sample_ratio": 0.5}, {"type": "RASConfig", "sample_ratio": 0.25}],
        "BlockCacheConfig": [{"type": "BlockCacheConfig", "schedule": "fora", "interval": 2}],
    },
    "wan-moving-shapes": {
        "SparseAttentionConfig": [{"type": "SparseAttentionConfig"}],
        "AdaptiveGuidanceConfig": [{"type": "AdaptiveGuidanceConfig", "threshold": 0.99}],
    },
}

SAMPLES = {"sd-digits": (6, 2), "pixart-shapes": (8, 1), "sd3-shapes": (8, 1), "wan-moving-shapes": (4, 1)}


def default_specs() -> list[SweepSpec]:
    """One sweep per trained built-in diffusion model, over the plugins that exist."""
    available = {cls.__name__ for cls in registered_configs()}
    specs = []
    for model, grid in CANDIDATES.items():
        if not BUILTIN_MODELS[model].is_trained():
            continue
        configs: list = ["none"]
        for config_name, entries in grid.items():
            if config_name in available:
                configs.extend(entries)
        prompts, seeds = SAMPLES[model]
        specs.append(
            SweepSpec(
                model=model,
                steps=20,
                num_prompts=prompts,
                seeds_per_prompt=seeds,
                fewer_steps=[5, 8, 12],
                configs=configs,
                name=model,
            )
        )
    return specs
