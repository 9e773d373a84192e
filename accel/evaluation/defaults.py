"""The default sweep of ``accel eval`` (the README's main command): every built-in diffusion model
that has weights, with every plugin that supports it, and the shipped tuned plan's settings at about
2x, 3x and 4x (entries named ``tuned-2x`` ...), so that the sweep shows accel at its best beside the
single plugins. Where the model ships searched timestep schedules (``plans/<model>/schedules``, from
``accel schedule MODEL --steps 5 8 12 --reference 20``), fewer steps on them are a stronger rival; where
another solver beats the shipped one (:data:`BEST_SOLVER`), fewer steps with it are a third.

It is small enough for the whole main command, install included, to finish within 5 minutes on 2 CPU
cores. Few samples give wide intervals, so more verdicts are ties: a spec with more prompts (``accel
eval SPEC.yaml``) gives firm ones. Verdicts are judged on FLOPs (see ``accel eval --speed``)."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..facts import plugins_with_facts
from ..pipelines.builtin import BUILTIN_MODELS
from .spec import SweepSpec

#: The strongest solver per built-in model where it clearly beats the shipped scheduler (``python -m
#: benchmarks.solvers``, ``benchmarks/results/solvers.md``): UniPC on PixArt and SD3 at every step count.
#: Wan ships UniPC, its best; on sd-digits DPM-Solver++ beats DDIM at 5 steps only (ties at 8, loses at
#: 12), and the main job's 5-minute budget has no room for a rival that is not stronger. (sd-digits' shipped
#: plan runs DPM-Solver++ on its searched schedule; its margins over that rival are the tune's, measured on
#: held-out samples: docs/results.md.)
BEST_SOLVER = {"pixart-shapes": "unipc", "sd3-shapes": "unipc"}

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
        configs.extend(tuned_entries(model))
        schedules = os.path.join(BUILTIN_MODELS[model].plan_dir, "schedules")
        specs.append(
            SweepSpec(
                model=model,
                steps=20,
                num_prompts=prompts,
                seeds_per_prompt=seeds,
                fewer_steps=[5, 8, 12],
                schedules=schedules if os.path.isdir(schedules) else None,
                solver=BEST_SOLVER.get(model),
                configs=configs,
                name=model,
            )
        )
    return specs


#: Speedups of the shipped plans' settings in the default sweep.
TUNED_SPEEDUPS = (2, 3, 4)


def tuned_entries(model: str) -> list[dict[str, Any]]:
    """The shipped plan's settings picked at :data:`TUNED_SPEEDUPS` (each once), as grid entries named
    ``tuned-<s>x``, without the plan's target check (the sweep runs the plan's own model and call)."""
    from ..plan import PlanTargetConfig, load_plan

    folder = BUILTIN_MODELS[model].plan_dir
    if not os.path.isfile(os.path.join(folder, "plan.json")):
        return []
    plan, entries, seen = load_plan(folder), [], set()
    for speedup in TUNED_SPEEDUPS:
        try:
            setting = plan.pick(speedup=speedup)
        except ConfigError:  # the plan does not reach this speedup
            continue
        configs = [c.to_dict() for c in setting.configs if not isinstance(c, PlanTargetConfig)]
        key = (setting.num_inference_steps, repr(configs))
        if key in seen or not configs:
            continue
        seen.add(key)
        entries.append({"steps": setting.num_inference_steps, "configs": configs, "name": f"tuned-{speedup}x"})
    return entries
