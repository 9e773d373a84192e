"""The seeded NSGA-II generation step that ``accel search-cache`` and ``accel tune`` share (Deb et al.,
IEEE TEC 2002, through pymoo).

Algorithm: binary tournaments on (rank, crowding) pick parents, crossover and mutation make offspring,
and rank-and-crowding survival keeps the best of parents plus offspring. Every random draw comes from
``(seed, generation)``, and a checkpoint keeps the rank and crowding that survival gave the population
(recomputing them on the survivors alone would change the next tournaments), so a resumed search
retraces an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np


def mating(crossover: Any, mutation: Any) -> Any:
    """Binary tournament selection, then ``crossover`` and ``mutation``; duplicates within a generation go."""
    from pymoo.algorithms.moo.nsga2 import binary_tournament
    from pymoo.core.duplicate import DefaultDuplicateElimination
    from pymoo.core.mating import Mating
    from pymoo.operators.selection.tournament import TournamentSelection

    return Mating(
        TournamentSelection(func_comp=binary_tournament),
        crossover,
        mutation,
        eliminate_duplicates=DefaultDuplicateElimination(),
    )


def survive(problem: Any, population: Any, size: int, seed: int, generation: int) -> Any:
    """Rank-and-crowding survival of ``size`` individuals, with the draws of ``generation``."""
    from pymoo.algorithms.moo.nsga2 import RankAndCrowding

    rng = np.random.default_rng([seed, generation, 1])
    return RankAndCrowding().do(problem, population, n_survive=size, random_state=rng)


def next_generation(
    problem: Any,
    mate: Any,
    population: Any,
    size: int,
    seed: int,
    generation: int,
    evaluate: Callable[[np.ndarray, np.random.Generator], Any],
) -> Any:
    """Generation ``generation + 1`` from ``population``: ``evaluate(offspring_x, rng)`` returns the offspring
    as a pymoo ``Population`` with objectives set (it may alter them first, with ``rng``)."""
    from pymoo.core.population import Population

    rng = np.random.default_rng([seed, generation + 1])
    algorithm = SimpleNamespace(tournament_type="comp_by_dom_and_crowding", random_state=rng)
    offspring = mate.do(problem, population, size, random_state=rng, algorithm=algorithm)
    offspring = evaluate(offspring.get("X"), rng)
    return survive(problem, Population.merge(population, offspring), size, seed, generation + 1)


def ranking(population: Any) -> dict[str, list]:
    """What a checkpoint keeps besides the genomes: survival's rank and crowding, in population order."""
    return {
        "rank": [int(r) for r in population.get("rank")],
        "crowding": [float(c) for c in population.get("crowding")],
    }


def restore_ranking(problem: Any, population: Any, data: dict[str, Any], seed: int, generation: int) -> Any:
    """The checkpointed rank and crowding back on ``population`` (older checkpoints without them: survival
    recomputes them, which a resumed search may then diverge from)."""
    if "rank" not in data:
        return survive(problem, population, len(population), seed, generation)
    population.set("rank", np.array(data["rank"]), "crowding", np.array(data["crowding"], dtype=float))
    return population
