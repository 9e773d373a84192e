"""``accel tune``: one NSGA-II search over the step count and every plugin stack, and a plan from its front.

Algorithm (ECAD's evolutionary search, Aggarwal et al., arXiv 2506.15682, widened from one cache
schedule to whole stacks): integer genomes (:mod:`.stack_space`) evolve under pymoo's NSGA-II
(binary tournament, uniform crossover, random-reset mutation, rank-and-crowding survival) with two
objectives measured by running each stack on calibration prompts: denoiser FLOPs counted as it runs,
over the full-step baseline's, and a quality loss (minus the PSNR to the full-step baseline's
output by default). Every front member is then re-run on prompts and seeds disjoint from
calibration; the plan keeps the members that stay on the front there.

Robustness: every evaluated stack is a JSON file under ``DIR/evals`` and the population is
checkpointed each generation, with randomness drawn from ``(seed, generation)``, so a killed tune
resumes to the front an uninterrupted one reaches. Under ``accelerate launch`` each generation's new
stacks are split over the processes; evaluations are deterministic, so any process count gives the
same front.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import time
from typing import Any

import numpy as np
import torch

from .. import api
from ..devices import dtype_name, module_device_dtype, resolve_device, resolve_dtype, what_ran
from ..errors import ConfigError
from ..files import write_json
from ..fingerprint import denoiser_fingerprint
from ..metrics.cost import measure_interleaved
from ..plan import Plan, PlanSetting, PlanTargetConfig, distinct_front
from ..plugin import config_from_dict
from ..sampling.schedulers import is_flow_matching
from ..sampling.solver import SOLVERS, build_solver, solver_problem
from ..sampling.timestep_schedule import takes_schedule
from ..sparse_attention.grid import probe_grid
from . import nsga2, processes
from .processes import Processes
from .stack_space import SCHEDULE, SOLVER, StackSpace
from .tune_outputs import local_paths, plot_plan, portable_paths, recorded_call, write_eval_spec
from .tune_samples import Samples, per_prompt

FORMAT = "accel-tune/1"
QUALITY_METRICS = ("psnr", "ssim", "alignment")
#: The solver gene's choices: the higher-order multistep solvers (``python -m benchmarks.solvers``: the
#: first-order ones, DDIM and Euler, never beat them at few steps on the built-in models)
TUNED_SOLVERS = ("dpmsolver++", "unipc")


def tuned_solvers(scheduler: Any) -> tuple[str, ...]:
    """The solvers the solver gene may swap in for ``scheduler``: those that fit it, its own class left out."""
    return tuple(
        s for s in TUNED_SOLVERS if solver_problem(scheduler, s) is None and SOLVERS[s] != type(scheduler).__name__
    )


@dataclasses.dataclass
class TuneSettings:
    """Search size and data. ``minutes`` bounds the search (validation always runs); ``num_prompts``
    x ``seeds`` calibration samples, ``validation_prompts`` x ``validation_seeds`` held-out ones."""

    population: int = 20
    generations: int = 12
    seed: int = 0
    minutes: float | None = None
    num_prompts: int = 8
    seeds: int = 1
    validation_prompts: int = 8
    validation_seeds: int = 2
    metric: str = "psnr"
    linear_ag: bool = True
    #: search a timestep schedule per step count (``accel schedule``) and make it a gene
    schedule: bool = True
    #: make the solver a gene (:data:`TUNED_SOLVERS` that fit the pipeline, besides its own scheduler)
    solver: bool = True
    wall_repeats: int = 3
    #: samples per pipeline call while generating calibration and validation sets (None: one per call on a
    #: GPU, all in one call on the CPU); the results do not depend on it (per-sample generators)
    batch_size: int | None = None

    def __post_init__(self) -> None:
        from ..config import check_float, check_int

        check_int("tune", "population", self.population, 4, 1000)
        check_int("tune", "generations", self.generations, 0, 10_000)
        check_int("tune", "num_prompts", self.num_prompts, 1, 10_000)
        check_int("tune", "seeds", self.seeds, 1, 1000)
        check_int("tune", "validation_prompts", self.validation_prompts, 1, 10_000)
        check_int("tune", "validation_seeds", self.validation_seeds, 1, 1000)
        check_int("tune", "wall_repeats", self.wall_repeats, 0, 100)
        check_int("tune", "batch_size", self.batch_size, 1, 100_000, allow_none=True)
        check_float("tune", "minutes", self.minutes, 0.0, 1e6, allow_none=True)
        for name in ("linear_ag", "schedule", "solver"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"tune {name} must be true or false, got {getattr(self, name)!r}")
        if self.metric not in QUALITY_METRICS:
            raise ConfigError(f"tune metric must be one of {QUALITY_METRICS}, got {self.metric!r}")


def split_prompts(prompts: list[str], settings: TuneSettings) -> tuple[list[str], list[str]]:
    """Calibration prompts first, held-out prompts after them: disjoint, or an error saying how many are needed."""
    need = settings.num_prompts + settings.validation_prompts
    unique = list(dict.fromkeys(prompts))
    if len(unique) < need:
        raise ConfigError(
            f"tune needs {need} distinct prompts ({settings.num_prompts} for calibration and "
            f"{settings.validation_prompts} held out), the prompt set has {len(unique)}"
        )
    return unique[: settings.num_prompts], unique[settings.num_prompts : need]


def _reset_mutation(prob_var: float) -> Any:
    """Random-reset mutation for integer genes: each gene is redrawn with probability ``prob_var``."""
    from pymoo.core.mutation import Mutation

    class ResetMutation(Mutation):
        def _do(self, problem: Any, X: np.ndarray, random_state: Any = None, **kwargs: Any) -> np.ndarray:
            X = np.array(X, dtype=int)
            redraw = random_state.random(X.shape) < prob_var
            fresh = np.floor(random_state.random(X.shape) * (problem.xu + 1)).astype(int)
            return np.where(redraw, fresh, X)

    return ResetMutation(prob=1.0)


class Tuner:
    """One tune in ``out_dir``: search, validation, plan. Construct, then :meth:`run`."""

    def __init__(
        self,
        pipe: Any,
        model: str,
        out_dir: str,
        call: dict[str, Any],
        calibration_prompts: list[str],
        validation_prompts: list[str],
        settings: TuneSettings,
        dataset: str | None = None,
        state: Any = None,
        progress: bool = True,
    ) -> None:
        self.pipe = pipe
        self.model = model
        self.out_dir = out_dir = os.path.abspath(out_dir)
        self.call = call
        self.settings = settings
        self.processes = Processes(state)
        self.progress = progress and self.is_main
        self.base_steps = int(call["num_inference_steps"])
        guided = uses_cfg(pipe, call)
        if settings.metric == "alignment" and dataset is None:
            raise ConfigError("the alignment metric needs a built-in model (its domain classifier)")
        domain = None
        if settings.metric == "alignment":
            from ..metrics.domain import DomainMetrics

            domain = DomainMetrics(dataset)
        self.calibration_seeds = [settings.seed * 1000 + i for i in range(settings.seeds)]
        self.validation_seeds = [settings.seed * 1000 + 500 + i for i in range(settings.validation_seeds)]
        self.calibration_prompts = calibration_prompts
        self.validation_prompts = validation_prompts
        os.makedirs(os.path.join(out_dir, "evals"), exist_ok=True)
        os.makedirs(os.path.join(out_dir, "validation"), exist_ok=True)
        use_linear_ag = settings.linear_ag and guided
        solvers = tuned_solvers(pipe.scheduler) if settings.solver else ()
        #: solver (None: the pipeline's own) -> whether it runs a searched schedule
        self.schedule_solvers = {
            solver: takes_schedule(build_solver(pipe.scheduler, solver) if solver else pipe.scheduler, self.base_steps)
            is None
            for solver in (None, *solvers)
        }
        use_schedule = settings.schedule and any(self.schedule_solvers.values())
        self.space = StackSpace(
            api.adapter_of(pipe),
            self.base_steps,
            guided,
            self._coefficients if use_linear_ag else None,
            self._schedule if use_schedule else None,
            grid=probe_grid(pipe, per_prompt(call, 1), calibration_prompts[0]),  # None unless a video DiT
            flow_matching=is_flow_matching(pipe.scheduler),
            solvers=solvers,
        )
        self._write_or_check_manifest()
        if use_linear_ag and "adaptive_guidance" in self.space.plugin_names:
            self._calibrate_linear_ag()
        if use_schedule:
            self._search_schedules()
        self.calibration = Samples(
            pipe, calibration_prompts, self.calibration_seeds, call, settings.metric, domain, settings.batch_size
        )
        self._validation: Samples | None = None
        self._domain = domain
        self.evaluated: dict[str, dict[str, Any]] = {}
        self.known: set[str] = set()  # stacks evaluated by the search so far (what offspring must avoid)

    # ------------------------------------------------------------------ processes
    @property
    def is_main(self) -> bool:
        return self.processes.is_main

    @property
    def rank(self) -> int:
        return self.processes.rank

    @property
    def world(self) -> int:
        return self.processes.world

    # ------------------------------------------------------------------ files
    def _write_or_check_manifest(self) -> None:
        manifest = {
            "format": FORMAT,
            "model": self.model,
            "call": {k: v for k, v in self.call.items() if isinstance(v, (int, float, str, bool)) or v is None},
            "scheduler": type(self.pipe.scheduler).__name__,
            "denoiser": denoiser_fingerprint(self.denoiser),
            "calibration": {"prompts": self.calibration_prompts, "seeds": self.calibration_seeds},
            "validation": {"prompts": self.validation_prompts, "seeds": self.validation_seeds},
            "dtype": dtype_name(module_device_dtype(self.denoiser)[1]),
            "search": {
                k: v
                for k, v in dataclasses.asdict(self.settings).items()
                if k not in ("minutes", "generations", "batch_size")  # a budget, and memory: no effect on results
            },
            "space": self.space.describe(),
        }
        path = os.path.join(self.out_dir, "tune.json")
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            old.pop("started", None)
            if old != json.loads(json.dumps(manifest)):
                differs = sorted(k for k in manifest if old.get(k) != json.loads(json.dumps(manifest[k])))
                raise ConfigError(
                    f"{self.out_dir} holds a tune with other settings ({', '.join(differs)} differ); resume it with "
                    "the same arguments or use another --out"
                )
            return
        self.processes.barrier()
        if self.is_main:
            _write_json(path, {**manifest, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self.processes.barrier()

    def _coefficients(self, steps: int) -> str | None:
        return os.path.join(self.out_dir, "linear_ag", f"steps{steps}.json")

    def _schedule_folder(self, solver: str | None) -> str:
        return os.path.join(self.out_dir, "schedules", *([solver] if solver else []))

    def _schedule(self, steps: int, solver: str | None = None) -> str | None:
        if steps >= self.base_steps or not self.schedule_solvers.get(solver):
            return None
        return os.path.join(self._schedule_folder(solver), f"schedule_{steps}.json")

    def _search_schedules(self) -> None:
        """A searched schedule for every step count below the baseline's, on the baseline's own levels
        and the calibration samples, for the pipeline's scheduler and each solver of the solver gene that
        takes one (main process; the others wait). Resumable."""
        from .schedule_search import search_schedules

        if self.is_main:
            for solver, takes in self.schedule_solvers.items():
                missing = [
                    s
                    for s in self.space.step_choices
                    if takes and s < self.base_steps and not os.path.exists(self._schedule(s, solver))
                ]
                if missing:
                    prompts, seeds = self.calibration_prompts, self.calibration_seeds
                    folder = self._schedule_folder(solver)
                    search_schedules(self.pipe, prompts, seeds, self.call, missing, folder, self.base_steps, solver)
        self.processes.barrier()

    def _calibrate_linear_ag(self) -> None:
        """LinearAG coefficients for every step count in the space (main process; the others wait)."""
        from .linear_ag_fit import calibrate

        if self.is_main:
            for steps in self.space.step_choices:
                path = self._coefficients(steps)
                if not os.path.exists(path):
                    calibrate(
                        self.pipe,
                        self.calibration_prompts,
                        {**self.call, "num_inference_steps": steps},
                        self.calibration_seeds + [s + 1 for s in self.calibration_seeds],
                        out=path + ".tmp",
                        model_name=self.model,
                    )
                    os.replace(path + ".tmp", path)
        self.processes.barrier()

    # ------------------------------------------------------------------ evaluation
    def _evaluate_all(
        self, keys_to_x: dict[str, np.ndarray], folder: str, samples_fn: Any, desc: str | None = None
    ) -> dict[str, dict]:
        """Score every genome (split over processes); results are read back from ``folder``."""
        from tqdm.auto import tqdm

        todo = sorted(k for k in keys_to_x if not os.path.exists(os.path.join(folder, f"{k}.json")))
        mine = todo[self.rank :: self.world]
        show = self.progress and desc is not None and len(mine) > 1
        for key in tqdm(mine, desc=desc, unit="stack", disable=not show, leave=False):
            steps, configs = self.space.decode(keys_to_x[key])
            row = samples_fn().score(steps, configs)
            row.update(
                {"key": key, "steps": steps, "configs": [portable_paths(c.to_dict(), self.out_dir) for c in configs]}
            )
            _write_json(os.path.join(folder, f"{key}.json"), row)
        self.processes.barrier()
        out = {}
        for key in keys_to_x:
            with open(os.path.join(folder, f"{key}.json")) as f:
                out[key] = json.load(f)
        return out

    def objectives(self, key: str) -> tuple[float, float]:
        row = self.evaluated[key]
        return row["flops_ratio"], -row[self.settings.metric]

    def _population(self, x: np.ndarray) -> Any:
        from pymoo.core.population import Population

        x = np.array([self.space.canonical(v) for v in x])
        keys = {self.space.key(v): v for v in x}
        self.known.update(keys)
        self.evaluated.update(
            self._evaluate_all(keys, os.path.join(self.out_dir, "evals"), lambda: self.calibration, desc="stacks")
        )
        pop = Population.new(X=x)
        f = np.array([self.objectives(self.space.key(v)) for v in x])
        pop.set("F", f, "G", np.zeros((len(x), 0)), "H", np.zeros((len(x), 0)))
        return pop

    # ------------------------------------------------------------------ search
    def search(self) -> np.ndarray:
        """Run or resume NSGA-II; returns the final population."""
        from pymoo.core.problem import Problem
        from pymoo.operators.crossover.ux import UniformCrossover
        from tqdm.auto import tqdm

        s = self.settings
        space = self.space
        problem = Problem(n_var=space.n_var, n_obj=2, xl=0, xu=space.upper, vtype=int)
        mate = nsga2.mating(UniformCrossover(prob=0.9), _reset_mutation(min(0.5, 2.0 / space.n_var)))
        checkpoint = os.path.join(self.out_dir, "checkpoint.json")
        # every stack on disk, including those of a generation a kill cut short; which of them count as
        # already known (offspring that repeat one mutate further) is what the checkpoint says, as in an
        # uninterrupted run
        self.evaluated.update({row["key"]: row for row in evaluated_rows(self.out_dir)})
        if os.path.exists(checkpoint):
            with open(checkpoint) as f:
                data = json.load(f)
            generation, x = int(data["generation"]), np.array(data["population"], dtype=int)
            self.known = set(data.get("known", self.evaluated))  # older checkpoints: all on disk
            pop = nsga2.restore_ranking(problem, self._population(x), data, s.seed, generation)
        else:
            generation = 0
            rng = np.random.default_rng([s.seed, 0])
            seeds = space.seeds()
            while len(seeds) < s.population:
                seeds.append(space.canonical(np.floor(rng.random(space.n_var) * (space.upper + 1)).astype(int)))
            pop = nsga2.survive(problem, self._population(np.array(seeds)), s.population, s.seed, generation)
            self._checkpoint(generation, pop)
        start = time.perf_counter()
        bar = tqdm(
            total=s.generations,
            initial=min(generation, s.generations),
            desc="accel tune",
            unit="gen",
            disable=not self.progress,
        )
        while generation < s.generations:
            over = s.minutes is not None and time.perf_counter() - start > s.minutes * 60
            if self.processes.agree(over):
                if self.progress:
                    bar.write(
                        f"time budget of {s.minutes:g} min reached at generation {generation}; run again to resume"
                    )
                break
            pop = nsga2.next_generation(
                problem,
                mate,
                pop,
                s.population,
                s.seed,
                generation,
                lambda x, rng: self._population(self._fresh(x, rng)),
            )
            generation += 1
            self._checkpoint(generation, pop)
            front = self.front([space.key(v) for v in pop.get("X")])
            best = max(self.evaluated[k][s.metric] for k in front)
            fastest = max(1 / self.evaluated[k]["flops_ratio"] for k in front)
            bar.set_postfix(
                front=len(front), best=f"{best:.3g}", fastest=f"{fastest:.2f}x", stacks=len(self.evaluated)
            )
            bar.update(1)
        bar.close()
        self.finished_generations = generation
        return pop.get("X")

    def _fresh(self, offspring: np.ndarray, rng: np.random.Generator, attempts: int = 20) -> np.ndarray:
        """Offspring whose stack was already evaluated (many genomes mean the same stack once canonical)
        are mutated further, up to ``attempts`` times, so each generation spends its evaluations on
        new stacks."""
        space = self.space
        seen = set(self.known)
        out = []
        for x in offspring:
            x = space.canonical(x)
            for _ in range(attempts):
                if space.key(x) not in seen:
                    break
                gene = int(rng.integers(space.n_var))
                x = x.copy()
                x[gene] = int(rng.integers(space.upper[gene] + 1))
                x = space.canonical(x)
            seen.add(space.key(x))
            out.append(x)
        return np.array(out)

    def _checkpoint(self, generation: int, pop: Any) -> None:
        """The population in order, with the rank and crowding survival gave it (recomputing them on the
        survivors alone would change the next tournaments), and the stacks known so far."""
        if self.is_main:
            _write_json(
                os.path.join(self.out_dir, "checkpoint.json"),
                {
                    "generation": generation,
                    "population": np.asarray(pop.get("X"), dtype=int).tolist(),
                    **nsga2.ranking(pop),
                    "known": sorted(self.known),
                },
            )
        self.processes.barrier()

    def front(self, keys: list[str], rows: dict[str, dict] | None = None) -> list[str]:
        """Non-dominated keys (FLOPs and quality), cheapest first; one per (cost, quality) point."""
        rows = rows or self.evaluated
        metric = self.settings.metric
        points = {k: (rows[k]["flops_ratio"], -rows[k][metric]) for k in dict.fromkeys(keys)}
        front, seen = [], set()
        for key, (c, q) in sorted(points.items(), key=lambda kv: (kv[1], kv[0])):
            dominated = any(c2 <= c and q2 <= q and (c2 < c or q2 < q) for c2, q2 in points.values())
            if not dominated and (c, q) not in seen:
                seen.add((c, q))
                front.append(key)
        return front

    # ------------------------------------------------------------------ validation and plan
    def validation(self) -> Samples:
        if self._validation is None:
            self._validation = Samples(
                self.pipe,
                self.validation_prompts,
                self.validation_seeds,
                self.call,
                self.settings.metric,
                self._domain,
                self.settings.batch_size,
            )
        return self._validation

    def validate(self, population: np.ndarray) -> dict[str, Any]:
        """Re-run the calibration front and the fewer-steps curve on held-out samples."""
        keys = {self.space.key(v): self.space.canonical(v) for v in population}
        front = self.front(list(keys))
        fewer = {self.space.key(x): x for x in (self.space.encode(s, {}) for s in self.space.step_choices)}
        # the stronger rivals: fewer steps on the searched schedule, with another solver, or both
        searched: dict[str, np.ndarray] = {}
        solved: dict[str, np.ndarray] = {}
        for sampler in self.space.sampler_rivals():
            for steps in self.space.step_choices:
                x = self.space.encode(steps, sampler)
                key = self.space.key(x)
                if key not in fewer:
                    (solved if SOLVER in sampler else searched).setdefault(key, self.space.canonical(x))
        todo = {k: keys[k] for k in front} | fewer | searched | solved
        validated = self._evaluate_all(
            todo, os.path.join(self.out_dir, "validation"), self.validation, desc="validation (held-out samples)"
        )
        return {
            "front": front,
            "fewer_steps": list(fewer),
            "searched_schedule": list(searched),
            "solver": list(solved),
            "validated": validated,
        }

    def wall_speedups(self, keys: list[str]) -> dict[str, float | None]:
        """Paired wall-clock speedup of each stack over the baseline on one held-out sample (interleaved)."""
        repeats = self.settings.wall_repeats
        if repeats == 0 or not self.is_main:
            return dict.fromkeys(keys)
        prompt, seed = self.validation_prompts[0], self.validation_seeds[0]
        from tqdm.auto import tqdm

        out: dict[str, float | None] = {}
        for key in tqdm(keys, desc="paired wall clock", unit="setting", disable=not self.progress, leave=False):
            steps, configs = self.space.decode(self.space.genome(key))

            def run(steps: int = steps, configs: list = configs) -> None:
                self.validation().generate(steps, configs, [(prompt, seed)], count=False)

            times = measure_interleaved(
                {"baseline": lambda: run(self.base_steps, []), "stack": run}, warmup=1, repeats=repeats
            )
            out[key] = times["baseline"].median / times["stack"].median
        return out

    def write_plan(self, result: dict[str, Any]) -> Plan:
        metric = self.settings.metric
        validated = result["validated"]
        front = result["front"]
        # members still on the front on held-out samples, where plain fewer steps compete with them too
        rivals = result["fewer_steps"] + result.get("searched_schedule", []) + result.get("solver", [])
        kept = self.front(front + rivals, validated)
        walls = self.wall_speedups(kept)
        latent_shape = self.calibration.latent_shape
        target = {
            "denoiser": denoiser_fingerprint(self.denoiser),
            "scheduler": type(self.pipe.scheduler).__name__,
            "num_inference_steps": self.base_steps,
            "guidance_scale": self.call.get("guidance_scale"),
            "call": recorded_call(self.call),
            "latent_shape": list(latent_shape) if latent_shape is not None else None,
        }
        settings = []
        for key in kept:
            promised, held_out = self.evaluated[key], validated[key]
            configs = [config_from_dict(local_paths(c, self.out_dir)) for c in held_out["configs"]]
            guard = PlanTargetConfig(
                model=self.model,
                denoiser=tuple(sorted(target["denoiser"].items())),
                scheduler=target["scheduler"],
                num_inference_steps=held_out["steps"],
                guidance_scale=target["guidance_scale"],
                latent_shape=latent_shape,
            )
            settings.append(
                PlanSetting(
                    configs=(*configs, guard),
                    num_inference_steps=held_out["steps"],
                    speedup=round(1 / held_out["flops_ratio"], 4),
                    quality={
                        "promised": {m: round(promised[m], 4) for m in ("psnr", "ssim", metric) if m in promised},
                        "validated": {m: round(held_out[m], 4) for m in ("psnr", "ssim", metric) if m in held_out},
                    },
                    wall_speedup=None if walls[key] is None else round(walls[key], 3),
                )
            )
        gaps = [s.quality["promised"][metric] - s.quality["validated"][metric] for s in settings]
        device, dtype = module_device_dtype(self.denoiser)
        info = {
            "tuned": time.strftime("%Y-%m-%d"),
            "ran": {**what_ran(device, dtype), "processes": self.world},
            "baseline_steps": self.base_steps,
            "calibration_samples": len(self.calibration.items),
            "validation_samples": len(self.validation().items),
            "stacks_evaluated": len(self.evaluated),
            "generations": getattr(self, "finished_generations", None),
            "front_on_calibration": len(front),
            "overfitting": {
                "metric": metric,
                "mean_promised_minus_validated": round(float(np.mean(gaps)), 4),
                "max_promised_minus_validated": round(float(np.max(gaps)), 4),
            },
            "fewer_steps": [
                {
                    "num_inference_steps": validated[k]["steps"],
                    "speedup": round(1 / validated[k]["flops_ratio"], 4),
                    **{m: round(validated[k][m], 4) for m in ("psnr", "ssim", metric)},
                }
                for k in result["fewer_steps"]
            ],
            "searched_schedule": [self._rival_row(validated[k]) for k in result.get("searched_schedule", [])],
            "best_solver": self._best_solver_rows(result.get("solver", []), validated),
        }
        plan = Plan(self.model, target, distinct_front(settings, metric), metric, info)
        if self.is_main:
            plan.save(os.path.join(self.out_dir, "plan.json"))
            plot_plan(plan, result, self.evaluated, os.path.join(self.out_dir, "front"))
        self.processes.barrier()
        return plan

    def _rival_row(self, row: dict[str, Any]) -> dict[str, Any]:
        metric = self.settings.metric
        return {
            "num_inference_steps": row["steps"],
            "speedup": round(1 / row["flops_ratio"], 4),
            **{m: round(row[m], 4) for m in ("psnr", "ssim", metric)},
        }

    def _best_solver_rows(self, keys: list[str], validated: dict[str, dict]) -> list[dict[str, Any]]:
        """Per step count, the best of fewer steps with another solver (on its default spacing or its
        searched schedule), on held-out samples: the third rival curve."""
        metric = self.settings.metric
        best: dict[int, str] = {}
        for key in keys:
            steps = validated[key]["steps"]
            if steps not in best or validated[key][metric] > validated[best[steps]][metric]:
                best[steps] = key
        rows = []
        for steps in sorted(best):
            x = self.space.genome(best[steps])
            scheduled = SCHEDULE in self.space.index and bool(self.space.value(x, SCHEDULE))
            row = self._rival_row(validated[best[steps]])
            rows.append({**row, "solver": self.space.solver(x), "schedule": scheduled})
        return rows

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, "unet", None) or self.pipe.transformer

    def run(self) -> Plan:
        population = self.search()
        return self.write_plan(self.validate(population))


# ---------------------------------------------------------------------- helpers
def _write_json(path: str, data: Any) -> None:
    write_json(path, data, indent=2)


def tune(
    model: str | Any,
    out_dir: str,
    settings: TuneSettings | None = None,
    call: dict[str, Any] | None = None,
    prompts: list[str] | None = None,
    progress: bool = True,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
) -> Plan:
    """Tune ``model`` (a built-in name, a path or hub id, or a pipeline) and write ``out_dir/plan.json``.

    ``call``: the pipeline's call arguments besides the prompt (``num_inference_steps``,
    ``guidance_scale``, ``height``, ``width``, ``num_frames``, ``negative_prompt``, ...), recorded in the
    plan. Without ``guidance_scale`` the pipeline's own default (its ``__call__`` signature) is used.
    ``device`` / ``dtype``: where accel loads a named model (see :mod:`accel.devices`; "auto": the
    accelerate process's device, else CUDA, else the CPU; bfloat16 on CUDA, float32 elsewhere); a
    pipeline object is used where it is. Under ``accelerate launch`` the processes share the work
    (see the module docstring), each on its own device.
    """
    from ..evaluation.prompts import builtin_prompts
    from ..evaluation.spec import check_call
    from ..pipelines.builtin import BUILTIN_MODELS
    from ..pipelines.loading import load

    settings = settings or TuneSettings()
    name = model if isinstance(model, str) else type(model).__name__
    builtin = isinstance(model, str) and model in BUILTIN_MODELS
    if builtin and BUILTIN_MODELS[model].kind == "classifier":
        raise ConfigError(f"{model} is a classifier; accel tune tunes diffusion pipelines")
    call = dict(call or {})
    steps = call.pop("num_inference_steps", None)
    check_call(call, model, "tune")
    full_call = dict(BUILTIN_MODELS[model].call_defaults) if builtin else {}
    full_call.update(call)
    full_call["num_inference_steps"] = steps or full_call.get("num_inference_steps", 20)
    from ..config import check_float, check_int

    check_int("tune", "steps", full_call["num_inference_steps"], 2, 10_000)
    if "guidance_scale" not in full_call and default_guidance(model) is not None:
        full_call["guidance_scale"] = default_guidance(model)  # recorded in the plan, and checked at apply
    check_float("tune", "guidance_scale", full_call.get("guidance_scale"), 0.0, 100.0, allow_none=True)
    if prompts is None:
        if not builtin:
            raise ConfigError("tune a model that is not built in with prompts=[...] (or --prompts FILE)")
        prompts = builtin_prompts(model)
    calibration, held_out = split_prompts(prompts, settings)
    state = processes.process_state()
    if isinstance(model, str):
        target_device = resolve_device(device, state)
        pipe = load(model, device=str(target_device), dtype=resolve_dtype(dtype, target_device))
    else:
        pipe = model
    pipe.set_progress_bar_config(disable=True)
    if settings.batch_size is None and module_device_dtype(_denoiser_of(pipe))[0].type == "cuda":
        settings = dataclasses.replace(settings, batch_size=1)  # one sample per call on a GPU: bounded memory
    os.makedirs(out_dir, exist_ok=True)
    dataset = BUILTIN_MODELS[model].dataset if builtin else None
    tuner = Tuner(pipe, name, out_dir, full_call, calibration, held_out, settings, dataset, state, progress)
    plan = tuner.run()
    if isinstance(model, str) and tuner.is_main:
        write_eval_spec(plan, out_dir, model, full_call, [p for p in prompts if p not in calibration], prompts)
    return plan


def default_guidance(model: Any) -> float | None:
    """The pipeline's own default ``guidance_scale`` (from its ``__call__`` signature), or None."""
    from ..evaluation.spec import call_default

    value = call_default(model, "guidance_scale")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def uses_cfg(pipe: Any, call: dict[str, Any]) -> bool:
    """Whether the pipeline runs classifier-free guidance at this call's guidance scale (the pipelines
    that do have a ``do_classifier_free_guidance`` property; Flux's embedded guidance is not CFG)."""
    scale = call.get("guidance_scale")
    return hasattr(type(pipe), "do_classifier_free_guidance") and scale is not None and float(scale) > 1


def _denoiser_of(pipe: Any) -> torch.nn.Module:
    return getattr(pipe, "unet", None) or pipe.transformer


def evaluated_rows(out_dir: str) -> list[dict[str, Any]]:
    """Every stack a tune in ``out_dir`` evaluated on calibration samples."""
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "evals", "*.json"))):
        with open(path) as f:
            rows.append(json.load(f))
    return rows


__all__ = [
    "Samples",
    "TuneSettings",
    "Tuner",
    "evaluated_rows",
    "plot_plan",
    "split_prompts",
    "tune",
    "write_eval_spec",
]
