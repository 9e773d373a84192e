"""What ``accel tune`` searches over: the sampler's step count and every applicable plugin with its knobs,
as one integer genome (each gene an index into a list of choices).

A genome decodes to ``(num_inference_steps, [plugin configs])``. Decoding is canonical: knobs of a
plugin that is off are zeroed, knobs are clamped to what the step count allows, and stacks the
compatibility rules (:mod:`accel.compat`) forbid are pruned (the later plugin of a conflicting pair
is switched off) before anything runs, and knobs that do not change the config they are in (the
dynamic pattern's ``tau`` under the neighbourhood pattern) are zeroed, so two genomes that mean the
same stack share one key and one evaluation. Plain fewer-steps settings are part of the space
(every plugin off). Each plugin's genes and how they become a config are its own facts
(:class:`accel.facts.PluginFacts`); a plugin whose facts say which configs fit a video token grid
(sparse attention's neighbourhood pattern, GNA, arXiv 2504.16922) gets only the choices that fit
the tuned call's grid.

Two groups are the sampler's own rather than a plugin's: the solver (another diffusers solver than the
pipeline's, :class:`accel.SolverConfig`) and the searched timestep schedule of the step count on that
solver (:mod:`accel.tuning.schedule_search`). They come first in a decoded stack, solver before
schedule, as :func:`accel.apply` wants them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..compat import check_compatible
from ..config import PluginConfig
from ..errors import AccelError, IncompatiblePluginsError
from ..facts import Gene, TuneTarget, plugins_with_facts
from ..plugin import plugin_for
from ..sampling.linear_ag import LinearAGConfig, LinearAGPlugin
from ..sampling.solver import SolverConfig
from ..sampling.timestep_schedule import TimestepScheduleConfig

#: Step counts tried, as fractions of the baseline's.
STEP_FRACTIONS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


@dataclasses.dataclass(frozen=True)
class PluginGenes:
    """One plugin group: an on/off gene, its knob genes, and how knobs become a config."""

    name: str
    knobs: tuple[Gene, ...]
    build: Callable[[dict[str, Any], int], PluginConfig]  # (knob values, steps) -> config
    fits: Callable[[Any, TuneTarget], bool] | None = None  # (config, tuned call) -> worth searching
    needs_cfg: bool = False

    def default_config(self, steps: int) -> PluginConfig | None:
        return self.build({g.name: g.choices[0] for g in self.knobs}, steps)

    def for_target(self, target: TuneTarget, steps: int) -> PluginGenes:
        """This group with each knob's choices cut to those whose config (other knobs at their defaults)
        fits the tuned call (its video token grid, its sampler); the first choice always stays."""
        if self.fits is None:
            return self
        defaults = {g.name: g.choices[0] for g in self.knobs}
        knobs = []
        for gene in self.knobs:
            kept = [
                c
                for i, c in enumerate(gene.choices)
                if i == 0 or self.fits(self.build({**defaults, gene.name: c}, steps), target)
            ]
            knobs.append(Gene(gene.name, tuple(kept)))
        return dataclasses.replace(self, knobs=tuple(knobs))


def plugin_genes() -> tuple[PluginGenes, ...]:
    """A group for every registered plugin whose facts declare tune genes and a build, in their order."""
    return tuple(
        PluginGenes(p.facts.key, p.facts.genes, p.facts.build, p.facts.fits, p.facts.needs_cfg)
        for p in plugins_with_facts()
        if p.facts.genes and p.facts.build is not None
    )


#: LinearAG is a mode of the guidance group: its genes apply where coefficients exist.
LINEAR_AG_KNOBS = LinearAGPlugin.facts.genes

#: The gene of the searched timestep schedule (:mod:`accel.tuning.schedule_search`): on, the step count
#: runs on the levels searched for it (on the chosen solver), off, on the scheduler's default spacing.
SCHEDULE = "timestep_schedule"
#: The solver group: off, the pipeline's own scheduler; on, the solver its ``name`` gene chooses.
SOLVER = "solver"

#: step count, solver name (None: the pipeline's own) -> the searched schedule's file, or None
Schedules = Callable[[int, "str | None"], "str | None"]


def _no_config(knobs: dict[str, Any], steps: int) -> None:
    return None  # the schedule group builds through StackSpace._schedule_config (it needs the solver)


class StackSpace:
    """The genome of one model: step count first, then each applicable plugin group.

    Args:
        adapter: the denoiser's adapter (its kind and family decide which plugins apply).
        base_steps: the baseline's step count (the largest step count tried).
        guided: the pipeline runs classifier-free guidance (else guidance plugins are left out).
        linear_ag: step count -> coefficients path, for the step counts LinearAG was calibrated at
            (None: LinearAG is left out).
        schedules: (step count, solver or None) -> the searched timestep schedule's file, or None where
            there is none (the whole argument None: the schedule gene is left out). A step count without
            one runs the solver's default spacing whatever the gene says.
        grid: the tuned call's video token grid (frames, rows, columns), for the gene choices that
            depend on it (None: unknown, those choices are left out); see
            :func:`accel.sparse_attention.grid.probe_grid`.
        flow_matching: the pipeline samples by flow matching (for the choices only such samplers take,
            CFG-Zero*'s zeroed steps).
        solvers: the solvers the solver gene may swap in (empty: no solver gene); LinearAG coefficients,
            fitted on the pipeline's own scheduler, are used only without one.
    """

    def __init__(
        self,
        adapter: Any,
        base_steps: int,
        guided: bool,
        linear_ag: Callable[[int], str | None] | None = None,
        schedules: Schedules | None = None,
        grid: tuple[int, int, int] | None = None,
        flow_matching: bool = False,
        solvers: tuple[str, ...] = (),
    ) -> None:
        self.base_steps = base_steps
        self.grid = grid
        self.step_choices = tuple(sorted({max(2, round(base_steps * f)) for f in STEP_FRACTIONS} | {base_steps}))
        sampler = []
        if solvers:
            build_solver = lambda knobs, steps: SolverConfig(solver=knobs["name"])  # noqa: E731
            sampler.append(PluginGenes(SOLVER, (Gene("name", tuple(solvers)),), build_solver))
        if schedules is not None:
            sampler.append(PluginGenes(SCHEDULE, (), _no_config))
        target = TuneTarget(grid=grid, flow_matching=flow_matching)
        groups = [g.for_target(target, base_steps) for g in plugin_genes()]
        self.groups = sampler + [g for g in groups if self._applies(g, adapter, guided)]
        self.schedules = schedules
        self.linear_ag = linear_ag
        self.genes: list[Gene] = [Gene("steps", self.step_choices)]
        for group in self.groups:
            self.genes.append(Gene(group.name, (False, True)))
            if group.name == "adaptive_guidance" and linear_ag is not None:
                self.genes.append(Gene("guidance_mode", ("ag", "linear_ag")))
                self.genes += [Gene(f"linear_ag.{g.name}", g.choices) for g in LINEAR_AG_KNOBS]
            self.genes += [Gene(f"{group.name}.{g.name}", g.choices) for g in group.knobs]
        self.index = {g.name: i for i, g in enumerate(self.genes)}

    @staticmethod
    def _applies(group: PluginGenes, adapter: Any, guided: bool) -> bool:
        if group.needs_cfg and not guided:
            return False
        config = group.default_config(20)
        try:
            plugin_for(config).check(adapter, config, has_pipeline=True)
        except AccelError:
            return False
        return True

    @property
    def n_var(self) -> int:
        return len(self.genes)

    @property
    def upper(self) -> np.ndarray:
        return np.array([len(g.choices) - 1 for g in self.genes])

    @property
    def plugin_names(self) -> list[str]:
        return [g.name for g in self.groups]

    def describe(self) -> dict[str, list[Any]]:
        return {g.name: list(g.choices) for g in self.genes}

    # ------------------------------------------------------------------ decoding
    def value(self, x: np.ndarray, name: str) -> Any:
        gene = self.genes[self.index[name]]
        return gene.choices[int(x[self.index[name]])]

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """The same stack with unused genes zeroed and incompatible plugins switched off (pruned)."""
        x = np.array(x, dtype=int).clip(0, self.upper)
        steps = self.value(x, "steps")
        kept: list[PluginConfig] = []
        for group in self.groups:
            on = self.value(x, group.name)
            if on and group.name == SCHEDULE and self._schedule_config(x, steps) is None:
                x[self.index[group.name]] = on = 0  # no searched schedule at this step count on this solver
            if on:
                config = self._build(group, x, steps)
                try:
                    check_compatible([*kept, config])
                except IncompatiblePluginsError:
                    x[self.index[group.name]] = 0
                    on = False
                else:
                    kept.append(config)
            if not on:
                for name in self._knob_genes(group, x):
                    x[self.index[name]] = 0
            elif group.name == "adaptive_guidance" and "guidance_mode" in self.index:
                if self.value(x, "guidance_mode") == "linear_ag" and self._coefficients(x, steps) is None:
                    x[self.index["guidance_mode"]] = 0  # no coefficients (or another solver): adaptive guidance
                unused = "linear_ag" if self.value(x, "guidance_mode") == "ag" else None
                for gene in LINEAR_AG_KNOBS if unused else ():
                    x[self.index[f"linear_ag.{gene.name}"]] = 0
            if on:
                self._zero_unused_knobs(group, x, steps)
        return x

    def _zero_unused_knobs(self, group: PluginGenes, x: np.ndarray, steps: int) -> None:
        """Zero the knobs of an on group whose value does not change its config (in place)."""
        config = self._build(group, x, steps)
        for gene in group.knobs:
            i = self.index[f"{group.name}.{gene.name}"]
            if x[i] == 0:
                continue
            other = x.copy()
            other[i] = 0
            if self._build(group, other, steps) == config:
                x[i] = 0

    def _knob_genes(self, group: PluginGenes, x: np.ndarray) -> list[str]:
        names = [f"{group.name}.{g.name}" for g in group.knobs]
        if group.name == "adaptive_guidance" and "guidance_mode" in self.index:
            names += ["guidance_mode"] + [f"linear_ag.{g.name}" for g in LINEAR_AG_KNOBS]
        return names

    def solver(self, x: np.ndarray) -> str | None:
        """The solver a genome swaps in (None: the pipeline's own scheduler)."""
        if SOLVER not in self.index or not self.value(x, SOLVER):
            return None
        return self.value(x, f"{SOLVER}.name")

    def _schedule_config(self, x: np.ndarray, steps: int) -> TimestepScheduleConfig | None:
        path = self.schedules(steps, self.solver(x)) if self.schedules is not None else None
        return TimestepScheduleConfig.load(path) if path is not None and os.path.isfile(path) else None

    def _coefficients(self, x: np.ndarray, steps: int) -> str | None:
        """LinearAG's coefficients file at this step count, if fitted (they are fitted on the pipeline's own
        scheduler, so none under another solver)."""
        path = self.linear_ag(steps) if self.linear_ag is not None and self.solver(x) is None else None
        return path if path is not None and os.path.isfile(path) else None

    def _build(self, group: PluginGenes, x: np.ndarray, steps: int) -> PluginConfig:
        if group.name == SCHEDULE:
            return self._schedule_config(x, steps)
        knobs = {g.name: self.value(x, f"{group.name}.{g.name}") for g in group.knobs}
        config = group.build(knobs, steps)
        if group.name == "adaptive_guidance" and "guidance_mode" in self.index:
            if self.value(x, "guidance_mode") == "linear_ag":
                path = self._coefficients(x, steps)
                if path is not None:
                    return LinearAGConfig(
                        coefficients=path,
                        predict_every=self.value(x, "linear_ag.every"),
                        predict_until=self.value(x, "linear_ag.until"),
                        threshold=knobs["threshold"],
                        min_steps=config.min_steps,
                    )
        return config

    def decode(self, x: np.ndarray) -> tuple[int, list[PluginConfig]]:
        """``(num_inference_steps, configs)`` of a genome (canonicalised first)."""
        x = self.canonical(x)
        steps = self.value(x, "steps")
        configs = [self._build(g, x, steps) for g in self.groups if self.value(x, g.name)]
        return steps, configs

    def key(self, x: np.ndarray) -> str:
        return "-".join(str(int(v)) for v in self.canonical(x))

    def genome(self, key: str) -> np.ndarray:
        """The canonical genome a :meth:`key` names."""
        return np.array([int(v) for v in key.split("-")])

    # ------------------------------------------------------------------ seeds
    def encode(self, steps: int, plugins: dict[str, dict[str, Any]]) -> np.ndarray:
        """A genome from readable values: ``encode(10, {"deepcache": {"interval": 3}})``."""
        x = np.zeros(self.n_var, dtype=int)
        x[self.index["steps"]] = self.step_choices.index(steps)
        for name, knobs in plugins.items():
            x[self.index[name]] = 1
            for knob, value in knobs.items():
                gene = self.genes[self.index[knob if "." in knob or knob == "guidance_mode" else f"{name}.{knob}"]]
                x[self.index[gene.name]] = gene.choices.index(value)
        return x

    def seeds(self) -> list[np.ndarray]:
        """The initial population's known points, so that no region starts unexplored: every
        fewer-steps setting, also on the searched schedule (the rivals a plan is validated against);
        at the full, 70% and 50% step counts, each plugin alone with its default knobs and with each
        single knob changed; and every compatible pair at default knobs."""
        out = [self.encode(s, {}) for s in self.step_choices]
        for sampler in self.sampler_rivals():
            out += [self.encode(s, sampler) for s in self.step_choices]
        spots = sorted({self._nearest_steps(f * self.base_steps) for f in (1.0, 0.7, 0.5)}, reverse=True)
        for steps in spots:
            base = self.encode(steps, {})
            for group in self.groups:
                alone = base.copy()
                alone[self.index[group.name]] = 1
                out.append(alone)
                for name in self._knob_genes(group, alone):
                    for choice in range(1, len(self.genes[self.index[name]].choices)):
                        variant = alone.copy()
                        variant[self.index[name]] = choice
                        out.append(variant)
            for i, a in enumerate(self.groups):
                for b in self.groups[i + 1 :]:
                    out.append(self.encode(steps, {a.name: {}, b.name: {}}))
        unique: dict[str, np.ndarray] = {}
        for x in out:
            unique.setdefault(self.key(x), self.canonical(x))
        return list(unique.values())

    def sampler_rivals(self) -> list[dict[str, dict[str, Any]]]:
        """The sampler settings fewer steps are also run with, as :meth:`encode` takes them: the searched
        schedule, each solver, and each solver on its searched schedule (the rivals a plan must beat)."""
        solvers = self.genes[self.index[f"{SOLVER}.name"]].choices if SOLVER in self.index else ()
        out: list[dict[str, dict[str, Any]]] = [{SCHEDULE: {}}] if SCHEDULE in self.index else []
        for name in solvers:
            out.append({SOLVER: {"name": name}})
            if SCHEDULE in self.index:
                out.append({SOLVER: {"name": name}, SCHEDULE: {}})
        return out

    def _nearest_steps(self, steps: float) -> int:
        return min(self.step_choices, key=lambda s: (abs(s - steps), s))


__all__ = ["SCHEDULE", "SOLVER", "Gene", "PluginGenes", "StackSpace", "plugin_genes"]
