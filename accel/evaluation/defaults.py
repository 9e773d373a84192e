"""The default sweep of ``accel eval`` (the README's main command): every built-in diffusion model
that has weights, with every plugin that supports it. It is small enough for the whole main command,
install included, to finish within 5 minutes on 2 CPU cores; about 2 minutes of that is the sweep.
Few samples give wide intervals, so more verdicts are ties: a spec with more prompts
(``accel eval SPEC.yaml``) gives firm ones. Verdicts are judged on FLOPs (see ``accel eval --speed``)."""

from __future__ import annotations

from ..facts import plugins_with_facts
from ..pipelines.builtin import BUILTIN_MODELS
from .spec import SweepSpec

#: Prompts and seeds per prompt of each built-in model's sweep.
SAMPLES = {"sd-digits": (6, 2), "pixart-shapes": (8, 1), "sd3-shapes": (8, 1), "wan-moving-shapes": (4, 1)}


def default_specs() -> list[SweepSpec]:
    """One sweep per trained built-in diffusion model, over the grid entries the registered plugins'
    facts list for it (:attr:`accel.facts.PluginFacts.sweep`)."""
    specs = []
    for model, (prompts, seeds) in SAMPLES.items():
        if not BUILTIN_MODELS[model].is_trained():
            continue
        configs: list = ["none"]
        for plugin in plugins_with_facts():
            configs.extend(plugin.facts.sweep.get(model, []))
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
