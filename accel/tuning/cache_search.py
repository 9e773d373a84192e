"""Evolutionary search of caching schedules (ECAD, Aggarwal et al., arXiv 2506.15682) with pymoo's NSGA-II.

Algorithm: a population of bit-vector schedules evolves by tournament selection, point crossover
and bit-flip mutation; survival keeps the non-dominated, crowding-diverse individuals under two
objectives, predicted FLOPs (from a cost model measured once) and a quality loss on calibration
prompts (by default minus the PSNR to the uncached output of the same seeds).

Each generation draws its randomness from ``(seed, generation)`` and the population and every
evaluated individual are checkpointed as JSON, so an interrupted search resumes to exactly the
front an uninterrupted one reaches. A wall-clock budget stops it cleanly (resume later).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import api
from ..devices import module_device_dtype, resolve_device, resolve_dtype, what_ran
from ..errors import ConfigError
from ..files import atomic_write, write_json
from ..metrics.fidelity import psnr, ssim
from . import nsga2

QUALITY_METRICS = ("psnr", "ssim", "alignment")


@dataclasses.dataclass
class SearchSettings:
    population: int = 24
    generations: int = 30
    seed: int = 0
    minutes: float | None = None
    mutation: float | None = None  # per-bit flip probability (default 1 / n_var * 4)
    metric: str = "psnr"


class CalibrationSet:
    """Calibration prompts and seeds, the baseline outputs, and candidate scoring."""

    def __init__(
        self,
        pipe: Any,
        prompts: list[str],
        seeds: list[int],
        call: dict[str, Any],
        metric: str = "psnr",
        dataset: str | None = None,
    ) -> None:
        if metric not in QUALITY_METRICS:
            raise ConfigError(f"metric must be one of {QUALITY_METRICS}, got {metric!r}")
        if metric == "alignment" and dataset is None:
            raise ConfigError("the alignment metric needs a built-in model (its domain classifier)")
        self.pipe = pipe
        self.items = [(p, s) for s in seeds for p in prompts]
        self.call = call
        self.metric = metric
        self.domain = None
        if metric == "alignment":
            from ..metrics.domain import DomainMetrics

            self.domain = DomainMetrics(dataset)
        self.baseline = self.generate([])

    @torch.no_grad()
    def generate(self, configs: list[Any]) -> torch.Tensor:
        api.remove(self.pipe)
        api.apply(self.pipe, *configs)
        try:
            out = self.pipe(
                prompt=[p for p, _ in self.items],
                generator=[torch.Generator("cpu").manual_seed(s) for _, s in self.items],
                output_type="pt",
                **self.call,
            )
        finally:
            api.remove(self.pipe)
        return (out.frames if hasattr(out, "frames") else out.images).float().clamp(0, 1)

    def loss(self, images: torch.Tensor) -> float:
        """Quality loss to minimise (negated score)."""
        if self.metric == "psnr":
            return -float(psnr(images, self.baseline).clamp(max=100).mean())
        if self.metric == "ssim":
            return -float(ssim(images, self.baseline).mean())
        return -float(self.domain.alignment(images, [p for p, _ in self.items]).mean())


def _bits_key(bits: np.ndarray) -> str:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex() + f":{len(bits)}"


def spread(seeds: list[np.ndarray], size: int, cost: Callable[[np.ndarray], float]) -> list[np.ndarray]:
    """At most ``size`` of the hand-made ``seeds``, evenly spaced in cost from the cheapest to the dearest,
    so that the first population spans every interval rather than the first one's variants. Seeds of equal
    cost (the same schedule with and without forecasting) count as one level, represented by the first
    the space lists (the forecasting one); the rest fill any places left."""
    if len(seeds) <= size:
        return list(seeds)
    levels: dict[float, list[np.ndarray]] = {}
    for seed in seeds:
        levels.setdefault(round(cost(seed), 9), []).append(seed)
    groups = [levels[c] for c in sorted(levels)]
    if len(groups) >= size:
        return [groups[int(i)][0] for i in np.linspace(0, len(groups) - 1, size).round()]
    rest = [seed for group in groups for seed in group[1:]]
    return [g[0] for g in groups] + [rest[int(i)] for i in np.linspace(0, len(rest) - 1, size - len(groups)).round()]


class ScheduleSearch:
    """NSGA-II over a search space (see :mod:`accel.tuning.cache_search_spaces`), resumable."""

    def __init__(self, space: Any, calibration: CalibrationSet, out_dir: str, settings: SearchSettings) -> None:
        self.space = space
        self.calibration = calibration
        self.out_dir = out_dir
        self.settings = settings
        self.evaluated: dict[str, tuple[float, float]] = {}
        os.makedirs(os.path.join(out_dir, "candidates"), exist_ok=True)
        self.checkpoint_path = os.path.join(out_dir, "checkpoint.json")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, bits: np.ndarray) -> tuple[float, float]:
        key = _bits_key(bits)
        if key not in self.evaluated:
            path = os.path.join(self.out_dir, "candidates", f"{len(self.evaluated):05d}.json")
            config = self.space.config(bits, path)
            images = self.calibration.generate([config])
            self.evaluated[key] = (self.space.cost(bits), self.calibration.loss(images))
        return self.evaluated[key]

    # ------------------------------------------------------------------ checkpoint
    def save(self, generation: int, population: Any) -> None:
        """The population in order with survival's rank and crowding, and every evaluated schedule."""
        data = {
            "format": "accel-cache-search/1",
            "generation": generation,
            "settings": dataclasses.asdict(self.settings),
            "space": self.space.kind,
            "n_var": self.space.n_var,
            "population": [p.astype(int).tolist() for p in population.get("X")],
            **nsga2.ranking(population),
            "evaluated": {k: list(v) for k, v in self.evaluated.items()},
        }
        write_json(self.checkpoint_path, data)

    def load(self) -> dict[str, Any] | None:
        if not os.path.exists(self.checkpoint_path):
            return None
        with open(self.checkpoint_path) as f:
            data = json.load(f)
        if data.get("n_var") != self.space.n_var or data.get("space") != self.space.kind:
            raise ConfigError(
                f"{self.checkpoint_path} belongs to a different search (space or size differs); use another --out"
            )
        self.evaluated = {k: tuple(v) for k, v in data["evaluated"].items()}
        return data

    # ------------------------------------------------------------------ the loop
    def run(self, progress: bool = True, on_generation: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
        """Run or resume; returns the final population's bit vectors."""
        from pymoo.core.population import Population
        from pymoo.core.problem import Problem
        from pymoo.operators.crossover.pntx import PointCrossover
        from pymoo.operators.mutation.bitflip import BitflipMutation
        from tqdm.auto import tqdm

        s = self.settings
        problem = Problem(n_var=self.space.n_var, n_obj=2, xl=0, xu=1, vtype=bool)
        flip = s.mutation if s.mutation is not None else min(0.5, 4.0 / self.space.n_var)
        mate = nsga2.mating(PointCrossover(n_points=4, prob=0.9), BitflipMutation(prob=1.0, prob_var=flip))

        def to_population(x: np.ndarray, rng: Any = None) -> Any:
            pop = Population.new(X=x.astype(bool))
            pop.set(
                "F", np.array([self.evaluate(b) for b in x]), "G", np.zeros((len(x), 0)), "H", np.zeros((len(x), 0))
            )
            return pop

        resumed = self.load()
        if resumed is None:
            generation = 0
            rng = np.random.default_rng([s.seed, 0])
            seeds = spread(self.space.seeds(), s.population, self.space.cost)
            while len(seeds) < s.population:
                seeds.append(rng.random(self.space.n_var) < rng.uniform(0.3, 0.9))
            pop = nsga2.survive(problem, to_population(np.array(seeds)), s.population, s.seed, generation)
            self.save(generation, pop)
        else:
            generation = int(resumed["generation"])
            pop = to_population(np.array(resumed["population"], dtype=bool))
            pop = nsga2.restore_ranking(problem, pop, resumed, s.seed, generation)
        start = time.perf_counter()
        bar = tqdm(total=s.generations, initial=generation, desc="search-cache", unit="gen", disable=not progress)
        while generation < s.generations:
            if s.minutes is not None and time.perf_counter() - start > s.minutes * 60:
                break
            pop = nsga2.next_generation(problem, mate, pop, s.population, s.seed, generation, to_population)
            generation += 1
            self.save(generation, pop)
            front = self.front(pop.get("X"))
            best = max(-self.evaluated[_bits_key(b)][1] for b in front)
            bar.set_postfix(front=len(front), best_quality=f"{best:.3g}", evaluated=len(self.evaluated))
            bar.update(1)
            if on_generation is not None:
                on_generation(generation, pop.get("X"))
        bar.close()
        return pop.get("X")

    def front(self, population: np.ndarray) -> list[np.ndarray]:
        """Non-dominated individuals of ``population`` (cost and loss both minimised), cheapest first."""
        points = [(self.evaluated[_bits_key(b)], b) for b in population]
        front, seen = [], set()
        for (c, q), b in points:
            if not any((c2 <= c and q2 <= q) and (c2 < c or q2 < q) for (c2, q2), _ in points) and (c, q) not in seen:
                seen.add((c, q))  # equal cost and quality: one representative is enough
                front.append(b)
        return sorted(front, key=lambda b: self.evaluated[_bits_key(b)][0])

    def export_front(self, population: np.ndarray, measure: bool = True) -> list[dict[str, Any]]:
        """Save every front member as ``front/NN.json`` (schedule + measured cost and quality)."""
        front_dir = os.path.join(self.out_dir, "front")
        os.makedirs(front_dir, exist_ok=True)
        rows = []
        base_flops = self._measure_flops([]) if measure else None
        for i, bits in enumerate(self.front(population)):
            cost, loss = self.evaluated[_bits_key(bits)]
            path = os.path.join(front_dir, f"{i:02d}.json")
            config = self.space.config(bits, path)
            measured = self._measure_flops([config]) / base_flops if measure else None
            row = {
                "path": path,
                "flops_ratio_predicted": round(cost, 5),
                "flops_ratio_measured": None if measured is None else round(measured, 5),
                "speedup_flops": round(1 / cost, 4),
                self.settings.metric: round(-loss, 5),
            }
            rows.append(row)
            self._embed(path, row)
        write_json(os.path.join(self.out_dir, "front.json"), rows, indent=2)
        return rows

    def _embed(self, path: str, row: dict[str, Any]) -> None:
        with open(path) as f:
            data = json.load(f)
        data.setdefault("metadata", {}).update(
            {
                "cost": {k: row[k] for k in ("flops_ratio_predicted", "flops_ratio_measured", "speedup_flops")},
                "quality": {
                    self.settings.metric: row[self.settings.metric],
                    "reference": "uncached output, same prompts and seeds",
                    "calibration_samples": len(self.calibration.items),
                },
            }
        )
        write_json(path, data)

    def _measure_flops(self, configs: list[Any]) -> float:
        """Denoiser FLOPs of one generation, counted while it runs (checks the cost model)."""
        from ..metrics.cost import ModuleFlops

        pipe = self.calibration.pipe
        prompt, seed = self.calibration.items[0]
        api.apply(pipe, *configs)
        try:
            with torch.no_grad(), ModuleFlops(getattr(pipe, "unet", None) or pipe.transformer) as flops:
                pipe(
                    prompt=prompt,
                    generator=torch.Generator("cpu").manual_seed(seed),
                    output_type="latent",
                    **self.calibration.call,
                )
        finally:
            api.remove(pipe)
        return float(flops.total)


def plot_front(rows: list[dict[str, Any]], metric: str, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    xs = [r["speedup_flops"] for r in rows]
    ys = [r[metric] for r in rows]
    ax.plot(xs, ys, "-o", color="tab:blue", label="searched schedules (Pareto front)")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(
            os.path.basename(r["path"]).split(".")[0], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.set_xlabel("FLOP speedup over no caching (x)")
    ax.set_ylabel(f"{metric} to uncached output (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=130)
    plt.close(fig)
    return path


def search_cache(
    model: str | Any,
    out_dir: str,
    steps: int = 20,
    kind: str = "auto",
    prompts: list[str] | None = None,
    seeds: tuple[int, ...] = (0,),
    call: dict[str, Any] | None = None,
    settings: SearchSettings | None = None,
    branch: int = 1,
    progress: bool = True,
    forecast_order: int = 0,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
) -> list[dict[str, Any]]:
    """Search caching schedules for ``model`` (a built-in name, a path, or a pipeline) and export the front.

    ``kind`` is ``"block"`` (DiTs), ``"deepcache"`` (U-Nets) or ``"auto"`` (from the denoiser's family).
    ``forecast_order`` k > 0 lets every cached unit choose between reuse and a degree-k forecast.
    ``device`` / ``dtype``: where a named model is loaded (:mod:`accel.devices`); a pipeline object is
    used where it is.
    """
    from ..evaluation.prompts import builtin_prompts
    from ..pipelines.builtin import BUILTIN_MODELS
    from ..pipelines.loading import load
    from .cache_search_spaces import BlockScheduleSpace, DeepCacheStepSpace

    if forecast_order not in (0, 1, 2):
        raise ConfigError(f"forecast_order must be 0, 1 or 2, got {forecast_order!r}")
    settings = settings or SearchSettings()
    name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        target = resolve_device(device)
        pipe = load(model, device=str(target), dtype=resolve_dtype(dtype, target))
    else:
        pipe = model
    pipe.set_progress_bar_config(disable=True)
    base_call = dict(BUILTIN_MODELS[model].call_defaults) if isinstance(model, str) and model in BUILTIN_MODELS else {}
    base_call.update(call or {})
    base_call["num_inference_steps"] = steps
    if prompts is None:
        prompts = builtin_prompts(model)[:8] if isinstance(model, str) and model in BUILTIN_MODELS else ["a photo"]
    adapter = api.adapter_of(pipe)
    if kind == "auto":
        kind = "deepcache" if adapter.kind == "unet" else "block"
    if kind == "deepcache":
        space = DeepCacheStepSpace.measure(pipe, base_call, prompts[0], steps, branch, forecast_order)
    elif kind == "block":
        space = BlockScheduleSpace.measure(pipe, base_call, prompts[0], steps, forecast_order)
    else:
        raise ConfigError(f"kind must be 'auto', 'block' or 'deepcache', got {kind!r}")
    dataset = BUILTIN_MODELS[model].dataset if isinstance(model, str) and model in BUILTIN_MODELS else None
    calibration = CalibrationSet(pipe, prompts, list(seeds), base_call, settings.metric, dataset)
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(os.path.join(out_dir, "search.json")) as f:
        json.dump(
            {
                "model": name,
                "kind": kind,
                "steps": steps,
                "forecast_order": forecast_order,
                "prompts": prompts,
                "seeds": list(seeds),
                "call": {k: v for k, v in base_call.items() if isinstance(v, (int, float, str, bool))},
                "settings": dataclasses.asdict(settings),
                "ran": what_ran(*module_device_dtype(getattr(pipe, "unet", None) or pipe.transformer)),
            },
            f,
            indent=2,
        )
    search = ScheduleSearch(space, calibration, out_dir, settings)
    population = search.run(progress=progress)
    rows = search.export_front(population)
    plot_front(rows, settings.metric, os.path.join(out_dir, "front.png"))
    return rows


__all__ = ["CalibrationSet", "ScheduleSearch", "SearchSettings", "plot_front", "search_cache"]
