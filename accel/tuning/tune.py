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

import contextlib
import dataclasses
import glob
import json
import math
import os
import time
from typing import Any

import numpy as np
import torch

from .. import api
from ..devices import dtype_name, module_device_dtype, resolve_device, resolve_dtype, what_ran
from ..errors import ConfigError
from ..files import atomic_write, write_json
from ..fingerprint import denoiser_fingerprint
from ..metrics.cost import ModuleFlops, measure_interleaved
from ..metrics.fidelity import psnr, ssim
from ..plan import Plan, PlanSetting, PlanTargetConfig, distinct_front
from ..plugin import config_from_dict
from . import nsga2
from .stack_space import StackSpace

FORMAT = "accel-tune/1"
QUALITY_METRICS = ("psnr", "ssim", "alignment")
#: samples the generated eval spec asks for (at least), enough for FID with fold spreads on the built-in models
EVAL_SAMPLES = 48
#: fewer unseen prompts than this and the generated eval spec uses every prompt (with unseen seeds)
MIN_EVAL_PROMPTS = 20


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


class Samples:
    """Prompts x seeds, their full-step baseline, and how to score a stack on them.

    Each sample has its own generator, so a sample's image does not depend on which others share its
    pipeline call: ``batch_size`` bounds memory without changing results."""

    def __init__(
        self,
        pipe: Any,
        prompts: list[str],
        seeds: list[int],
        call: dict[str, Any],
        metric: str,
        domain: Any,
        batch_size: int | None = None,
    ):
        self.pipe = pipe
        self.items = [(p, s) for s in seeds for p in prompts]
        self.call = call
        self.metric = metric
        self.domain = domain
        self.batch_size = batch_size or len(self.items)
        self.latent_shape: tuple[int, ...] | None = None
        self.baseline, self.baseline_flops = self.generate(call["num_inference_steps"], [])

    @torch.no_grad()
    def generate(
        self, steps: int, configs: list[Any], prompts: list[tuple[str, int]] | None = None, count: bool = True
    ) -> Any:
        """Images of the stack on these samples, and the denoiser FLOPs counted while it ran (``count``;
        off for timing, since the counter's dispatch overhead would be timed too)."""
        items = prompts or self.items
        denoiser = getattr(self.pipe, "unet", None) or self.pipe.transformer
        api.remove(self.pipe)
        handle = api.apply(self.pipe, *configs)  # with no config: the loop context alone (it reads the latent size)
        chunks = []
        try:
            with ModuleFlops(denoiser) if count else contextlib.nullcontext() as flops:
                for start in range(0, len(items), self.batch_size):
                    batch = items[start : start + self.batch_size]
                    out = self.pipe(
                        prompt=[p for p, _ in batch],
                        generator=[torch.Generator("cpu").manual_seed(s) for _, s in batch],
                        output_type="pt",
                        **{**per_prompt(self.call, len(batch)), "num_inference_steps": steps},
                    )
                    chunks.append((out.frames if hasattr(out, "frames") else out.images).float().clamp(0, 1).cpu())
            self.latent_shape = handle.context.latent_shape
        finally:
            api.remove(self.pipe)
        return torch.cat(chunks), float(flops.total) if count else None

    def score(self, steps: int, configs: list[Any]) -> dict[str, float]:
        images, flops = self.generate(steps, configs)
        row = {
            "flops_ratio": flops / self.baseline_flops,
            "psnr": float(psnr(images, self.baseline).clamp(max=100).mean()),
            "ssim": float(ssim(images, self.baseline).mean()),
        }
        if self.domain is not None:
            row["alignment"] = float(self.domain.alignment(images, [p for p, _ in self.items]).mean())
        return row


def per_prompt(call: dict[str, Any], count: int) -> dict[str, Any]:
    """``call`` for a list of ``count`` prompts: a text negative prompt (``negative_prompt``,
    ``negative_prompt_2``, ...) repeated for each, as diffusers wants it of the same type as the prompt."""
    return {
        key: [value] * count if key.startswith("negative_prompt") and isinstance(value, str) else value
        for key, value in call.items()
    }


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
        self.state = state
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
        self.space = StackSpace(
            api.adapter_of(pipe), self.base_steps, guided, self._coefficients if use_linear_ag else None
        )
        self._write_or_check_manifest()
        if use_linear_ag and "adaptive_guidance" in self.space.plugin_names:
            self._calibrate_linear_ag()
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
        return self.state is None or self.state.is_main_process

    @property
    def rank(self) -> int:
        return 0 if self.state is None else self.state.process_index

    @property
    def world(self) -> int:
        return 1 if self.state is None else self.state.num_processes

    def _barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def _agree(self, flag: bool) -> bool:
        """The main process's decision, on every process (time budgets differ by a few ms per rank)."""
        if self.world == 1:
            return flag
        from accelerate.utils import broadcast_object_list

        box = [flag]
        broadcast_object_list(box, from_process=0)
        return bool(box[0])

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
        self._barrier()
        if self.is_main:
            _write_json(path, {**manifest, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        self._barrier()

    def _coefficients(self, steps: int) -> str | None:
        return os.path.join(self.out_dir, "linear_ag", f"steps{steps}.json")

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
        self._barrier()

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
                {"key": key, "steps": steps, "configs": [_portable(c.to_dict(), self.out_dir) for c in configs]}
            )
            _write_json(os.path.join(folder, f"{key}.json"), row)
        self._barrier()
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
            if self._agree(over):
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
        self._barrier()

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
        todo = {k: keys[k] for k in front} | fewer
        validated = self._evaluate_all(
            todo, os.path.join(self.out_dir, "validation"), self.validation, desc="validation (held-out samples)"
        )
        return {"front": front, "fewer_steps": list(fewer), "validated": validated}

    def wall_speedups(self, keys: list[str]) -> dict[str, float | None]:
        """Paired wall-clock speedup of each stack over the baseline on one held-out sample (interleaved)."""
        repeats = self.settings.wall_repeats
        if repeats == 0 or not self.is_main:
            return dict.fromkeys(keys)
        prompt, seed = self.validation_prompts[0], self.validation_seeds[0]
        from tqdm.auto import tqdm

        out: dict[str, float | None] = {}
        for key in tqdm(keys, desc="paired wall clock", unit="setting", disable=not self.progress, leave=False):
            steps, configs = self.space.decode(np.array([int(v) for v in key.split("-")]))

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
        kept = self.front(front + result["fewer_steps"], validated)
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
            configs = [config_from_dict(_local(c, self.out_dir)) for c in held_out["configs"]]
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
        }
        plan = Plan(self.model, target, distinct_front(settings, metric), metric, info)
        if self.is_main:
            plan.save(os.path.join(self.out_dir, "plan.json"))
            plot_plan(plan, result, self.evaluated, os.path.join(self.out_dir, "front"))
        self._barrier()
        return plan

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, "unet", None) or self.pipe.transformer

    def run(self) -> Plan:
        population = self.search()
        return self.write_plan(self.validate(population))


# ---------------------------------------------------------------------- helpers
def _write_json(path: str, data: Any) -> None:
    write_json(path, data, indent=2)


def _portable(data: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Paths inside the tune folder stored relative to it (the folder can move)."""
    root = os.path.abspath(out_dir)
    for key, value in data.items():
        if isinstance(value, str) and os.path.isabs(value) and value.startswith(root + os.sep):
            data[key] = os.path.relpath(value, root)
    return data


def _local(data: dict[str, Any], out_dir: str) -> dict[str, Any]:
    data = dict(data)
    for key, value in data.items():
        if isinstance(value, str) and os.path.isfile(os.path.join(out_dir, value)) and not os.path.isabs(value):
            data[key] = os.path.join(os.path.abspath(out_dir), value)
    return data


def plot_plan(plan: Plan, result: dict[str, Any], promised: dict[str, dict], stem: str) -> tuple[str, str]:
    """The plan's front (promised on calibration, validated on held-out samples) against fewer steps,
    as ``stem.png`` and ``stem.html``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    metric = plan.metric
    # the full-step baseline itself (1x, identical output) is left off: its PSNR is capped at 100 dB
    fewer = sorted((r for r in plan.info["fewer_steps"] if r["speedup"] > 1.001), key=lambda r: r["speedup"])
    settings = [s for s in plan.settings if s.speedup > 1.001]
    result = {**result, "front": [k for k in result["front"] if promised[k]["flops_ratio"] < 0.999]}
    fig, ax = plt.subplots(figsize=(6, 4.4))
    ax.plot(
        [r["speedup"] for r in fewer], [r[metric] for r in fewer], "--s", color="gray", label="fewer steps (held out)"
    )
    for r in fewer:
        ax.annotate(
            f"{r['num_inference_steps']}",
            (r["speedup"], r[metric]),
            fontsize=7,
            color="gray",
            xytext=(3, -9),
            textcoords="offset points",
        )
    xs = [s.speedup for s in settings]
    ax.plot(
        xs, [s.quality["validated"][metric] for s in settings], "-o", color="tab:blue", label="tuned plan (held out)"
    )
    ax.plot(
        [1 / promised[k]["flops_ratio"] for k in result["front"]],
        [promised[k][metric] for k in result["front"]],
        "o",
        mfc="none",
        color="tab:orange",
        label="front on calibration (promised)",
    )
    ax.set_xlabel("denoiser FLOP speedup over the full-step baseline (x)")
    ax.set_ylabel(f"{metric} to the full-step output (higher is better)")
    ax.set_title(f"accel tune: {plan.model}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(stem + ".png", "wb") as f:
        fig.savefig(f, format="png", dpi=130)
    plt.close(fig)

    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[r["speedup"] for r in fewer],
            y=[r[metric] for r in fewer],
            mode="lines+markers",
            name="fewer steps",
            text=[f"{r['num_inference_steps']} steps" for r in fewer],
            line={"dash": "dash", "color": "gray"},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=xs,
            y=[s.quality["validated"][metric] for s in settings],
            mode="lines+markers",
            name="tuned plan",
            text=[str(s) for s in settings],
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[1 / promised[k]["flops_ratio"] for k in result["front"]],
            y=[promised[k][metric] for k in result["front"]],
            mode="markers",
            name="front on calibration",
            marker={"symbol": "circle-open"},
        )
    )
    figure.update_layout(
        title=f"accel tune: {plan.model}",
        xaxis_title="denoiser FLOP speedup (x)",
        yaxis_title=f"{metric} to the full-step output",
    )
    with atomic_write(stem + ".html") as f:
        figure.write_html(f, include_plotlyjs="cdn")
    return stem + ".png", stem + ".html"


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
    state = _process_state()
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


def recorded_call(call: dict[str, Any]) -> dict[str, Any]:
    """The call arguments a plan records (JSON values; the step count and guidance have fields of their own)."""
    return {
        k: v
        for k, v in call.items()
        if k not in ("num_inference_steps", "guidance_scale") and (isinstance(v, (int, float, str, bool)) or v is None)
    }


def _denoiser_of(pipe: Any) -> torch.nn.Module:
    return getattr(pipe, "unet", None) or pipe.transformer


def write_eval_spec(
    plan: Plan, out_dir: str, model: str, call: dict[str, Any], held_out: list[str], all_prompts: list[str]
) -> str:
    """``out_dir/eval.yaml``: an ``accel eval`` sweep of the plan's settings and the fewer-steps curve on
    prompts and seeds the search never saw, for domain FID and alignment with fold spreads. Every path
    in it is absolute, so it runs from any folder."""
    import yaml

    from ..pipelines.builtin import BUILTIN_MODELS

    out_dir = os.path.abspath(out_dir)
    note = "prompts and seeds the search never saw"
    if len(held_out) < MIN_EVAL_PROMPTS:
        # too few unseen prompts to cover the domain (FID compares against all of it): every prompt,
        # with seeds the search never used
        held_out, note = (
            all_prompts,
            "every prompt (too few unseen ones to cover the domain), seeds the search never used",
        )
    prompt_file = os.path.join(out_dir, "eval_prompts.txt")
    with atomic_write(prompt_file) as f:
        f.write("\n".join(held_out) + "\n")
    base = plan.info["baseline_steps"]
    local = model not in BUILTIN_MODELS and os.path.isdir(os.path.expanduser(model))
    spec = {
        "model": os.path.abspath(os.path.expanduser(model)) if local else model,  # the spec works from any folder
        "dtype": plan.info.get("ran", {}).get("dtype", "auto"),
        "name": f"{os.path.basename(model.rstrip('/'))}-plan",
        "steps": base,
        "prompts": prompt_file,
        "seeds_per_prompt": max(2, math.ceil(EVAL_SAMPLES / max(1, len(held_out)))),
        "base_seed": 10_000,
        "fewer_steps": sorted({r["num_inference_steps"] for r in plan.info["fewer_steps"]} - {base}),
        "configs": [
            {"steps": s.num_inference_steps, "configs": [c.to_dict() for c in s.plugins]}
            for s in plan.settings
            if s.plugins
        ],
    }
    if call.get("guidance_scale") is not None:
        spec["guidance_scale"] = call["guidance_scale"]
    if recorded_call(call):
        spec["call"] = recorded_call(call)
    path = os.path.join(out_dir, "eval.yaml")
    with atomic_write(path) as f:
        f.write(f"# accel eval of this plan on {note}: accel eval {path}\n")
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


def _process_state() -> Any:
    """accelerate's ``PartialState`` when launched with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


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
