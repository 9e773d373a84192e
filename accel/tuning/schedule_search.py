"""Choosing N of a fine schedule's M levels by dynamic programming (OSS, Pei et al., arXiv 2503.21774;
"On the Trajectory Regularity of ODE-based Diffusion Sampling", Chen et al., ICML 2024).

Algorithm: run the pipeline at M steps on calibration prompts and record, at every level i, the state
x_i and the denoised estimate D_i; a jump from level i to level j costs the mean squared distance
between the first-order (DDIM) step from x_i with D_i and the reference x_j. Dynamic programming finds
the N jumps from level 0 to level M of least total cost; their start levels are the schedule
(:class:`accel.TimestepScheduleConfig`).

The reference costs are accumulated per sample in ``folder/reference_<M>.json``, so an interrupted
search resumes where it stopped; the schedules go to ``folder/schedule_<N>.json``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from .. import api
from ..errors import ConfigError, StateError
from ..files import read_json, write_json
from ..fingerprint import denoiser_fingerprint
from ..sampling.schedulers import is_flow_matching
from ..sampling.solver import SolverConfig
from ..sampling.timestep_schedule import TimestepScheduleConfig

FORMAT = "accel.schedule_reference"


def level_scales(scheduler: Any) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``(kind, alpha, noise)`` of every level of the scheduler's current schedule (its sigmas, the
    final one included): a state at level i is ``alpha_i * x0 + noise_i * eps``. Kinds: ``"flow"``
    (flow matching), ``"ve"`` (latents scaled by sigma, as Euler keeps them), ``"vp"``."""
    sigma = scheduler.sigmas.double().cpu()
    config = scheduler.config
    if is_flow_matching(scheduler) or getattr(config, "prediction_type", None) == "flow_prediction":
        return "flow", 1.0 - sigma, sigma
    if float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0 + 1e-6:
        return "ve", torch.ones_like(sigma), sigma
    alpha = 1.0 / torch.sqrt(1.0 + sigma**2)
    return "vp", alpha, sigma * alpha


def denoised(output: torch.Tensor, sample: torch.Tensor, kind: str, sigma: float, prediction: str) -> torch.Tensor:
    """The model's estimate of the clean sample at a level of noise ``sigma``."""
    if kind == "flow":
        if prediction not in ("flow_prediction", "epsilon", "v_prediction"):
            raise ConfigError(f"schedule search: flow matching with prediction_type {prediction!r} is not supported")
        return sample - sigma * output  # flow matching predicts velocity, noise - clean, whatever the config says
    if prediction == "sample":
        return output
    alpha = 1.0 / math.sqrt(1.0 + sigma**2)
    scaled = sample * alpha if kind == "ve" else sample  # the model sees VE latents scaled to unit variance
    a, s = (alpha, sigma * alpha)
    if prediction == "epsilon":
        return (scaled - s * output) / a
    if prediction == "v_prediction":
        return a * scaled - s * output
    raise ConfigError(f"schedule search: prediction_type {prediction!r} is not supported")


def jump_costs(
    states: torch.Tensor, estimates: torch.Tensor, alpha: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """``[M+1, M+1]`` summed per-sample MSE of the first-order jump from level i to level j > i
    (infinite elsewhere). ``states`` holds x_0 .. x_M ``[M+1, B, ...]``, ``estimates`` D_0 .. D_{M-1}."""
    m = estimates.shape[0]
    x = states.double().flatten(2)
    d = estimates.double().flatten(2)
    eps = (x[:m] - alpha[:m, None, None] * d) / noise[:m, None, None]
    costs = torch.full((m + 1, m + 1), math.inf, dtype=torch.float64)
    for i in range(m):
        jumped = alpha[i + 1 :, None, None] * d[i] + noise[i + 1 :, None, None] * eps[i]  # [M - i, B, F]
        costs[i, i + 1 :] = (jumped - x[i + 1 :]).pow(2).mean(-1).sum(-1)
    return costs


def best_indices(costs: torch.Tensor, steps: int) -> tuple[tuple[int, ...], float]:
    """The start levels of the ``steps`` jumps from level 0 to the last level of least total cost."""
    last = costs.shape[0] - 1
    if not 1 <= steps <= last:
        raise ConfigError(f"a schedule of {steps} steps must have 1 to {last} steps (the reference's count)")
    total = torch.full((steps + 1, last + 1), math.inf, dtype=torch.float64)
    came_from = torch.zeros((steps + 1, last + 1), dtype=torch.long)
    total[0, 0] = 0.0
    for k in range(1, steps + 1):
        reach = total[k - 1, :, None] + costs  # [from, to]
        total[k], came_from[k] = reach.min(0)
    path, level = [], last
    for k in range(steps, 0, -1):
        level = int(came_from[k, level])
        path.append(level)
    return tuple(reversed(path)), float(total[steps, last])


def path_cost(costs: torch.Tensor, indices: Sequence[int]) -> float:
    """Total cost of the jumps through ``indices`` and on to the last level."""
    stops = [*indices, costs.shape[0] - 1]
    return float(sum(costs[a, b] for a, b in zip(stops, stops[1:])))


def evenly_spaced(reference_steps: int, steps: int) -> tuple[int, ...]:
    """``steps`` levels spread evenly over the reference (the default spacing, on the reference grid)."""
    return tuple(int(round(i * reference_steps / steps)) for i in range(steps))


class _Recorder:
    """A scheduler-step wrapper keeping each step's input state and denoised estimate."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.states: list[torch.Tensor] = []
        self.estimates: list[torch.Tensor] = []

    def __call__(self, step_fn: Any, *args: Any, **kwargs: Any) -> Any:
        output = args[0] if args else kwargs["model_output"]
        sample = args[2] if len(args) > 2 else kwargs["sample"]
        level = len(self.estimates)
        kind, _, _ = level_scales(self.scheduler)
        sigma = float(self.scheduler.sigmas[level])
        prediction = getattr(self.scheduler.config, "prediction_type", "epsilon")
        self.states.append(sample.detach().float().cpu())
        self.estimates.append(denoised(output.float(), sample.float(), kind, sigma, prediction).detach().cpu())
        out = step_fn(*args, **kwargs)
        if level + 1 == len(self.scheduler.timesteps):
            prev = out[0] if isinstance(out, tuple) else out.prev_sample
            self.states.append(prev.detach().float().cpu())
        return out


@torch.no_grad()
def reference_costs(
    pipe: Any, prompt: str, seed: int, call: dict[str, Any], reference_steps: int, solver: str | None = None
) -> torch.Tensor:
    """The jump costs of one sample's ``reference_steps``-step trajectory (with ``solver`` swapped in, if
    given: :class:`accel.SolverConfig`)."""
    config = TimestepScheduleConfig(reference_steps=reference_steps, indices=tuple(range(reference_steps)))
    handle = api.apply(pipe, [SolverConfig(solver=solver), config] if solver is not None else config)
    scheduler = pipe.scheduler  # the solver's, which remove takes away again
    recorder = _Recorder(scheduler)
    handle.context.add_step_wrapper(recorder)
    try:
        generator = torch.Generator("cpu").manual_seed(seed)
        pipe(
            prompt=prompt,
            generator=generator,
            **{**call, "num_inference_steps": reference_steps, "output_type": "latent"},
        )
    finally:
        handle.context.remove_step_wrapper(recorder)
        api.remove(pipe)
    if len(recorder.states) != reference_steps + 1:
        raise StateError(f"the reference run made {len(recorder.estimates)} steps, not {reference_steps}")
    _, alpha, noise = level_scales(scheduler)
    return jump_costs(torch.stack(recorder.states), torch.stack(recorder.estimates), alpha, noise)


def _reference(
    folder: str, pipe: Any, call: dict, reference_steps: int, items: list[tuple[str, int]], solver: str | None
) -> torch.Tensor:
    """The summed costs over ``items`` (prompt, seed), resumed from and saved to ``folder``."""
    path = os.path.join(folder, f"reference_{reference_steps}.json")
    fingerprint = denoiser_fingerprint(getattr(pipe, "unet", None) or pipe.transformer)
    described = {k: _describe(v) for k, v in sorted(call.items())}
    if solver is not None:
        described["solver"] = solver
    state = read_json(path, "schedule reference") if os.path.exists(path) else None
    if state is None or state.get("fingerprint") != fingerprint or state.get("call") != described:
        state = {"format": FORMAT, "fingerprint": fingerprint, "call": described, "done": [], "sum": None}
    from tqdm.auto import tqdm

    for prompt, seed in tqdm(items, desc=f"reference trajectories ({reference_steps} steps)"):
        if [prompt, seed] in state["done"]:
            continue
        costs = reference_costs(pipe, prompt, seed, call, reference_steps, solver)
        total = costs if state["sum"] is None else _from_json(state["sum"]) + costs
        state["sum"] = [[None if math.isinf(c) else c for c in row] for row in total.tolist()]
        state["done"].append([prompt, seed])
        write_json(path, state)
    return _from_json(state["sum"])


def _describe(value: Any) -> Any:
    """A call argument as JSON: tensors (prompt embeddings) by shape and sum, everything else by value."""
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)} sum {float(value.double().sum()):.8g}"
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _from_json(rows: list[list[float | None]]) -> torch.Tensor:
    """Costs as JSON keeps them (None for the impossible backward jumps) back to a tensor."""
    return torch.tensor([[math.inf if c is None else c for c in row] for row in rows], dtype=torch.float64)


def search_schedules(
    pipe: Any,
    prompts: Sequence[str],
    seeds: Sequence[int],
    call: dict[str, Any],
    steps: Sequence[int],
    folder: str,
    reference_steps: int = 50,
    solver: str | None = None,
) -> dict[int, dict[str, Any]]:
    """Per step count N: the searched :class:`TimestepScheduleConfig`, its cost, and the cost of evenly
    spaced levels on the same grid. Written to ``folder/schedule_<N>.json`` (the config as JSON).
    ``solver``: search on that solver's levels and trajectory (:class:`accel.SolverConfig`; the schedule
    then runs after the same solver) instead of the pipeline's scheduler."""
    os.makedirs(folder, exist_ok=True)
    call = {k: v for k, v in call.items() if k != "num_inference_steps"}
    items = [(p, s) for p in prompts for s in seeds]
    costs = _reference(folder, pipe, call, reference_steps, items, solver)
    results = {}
    for n in steps:
        indices, cost = best_indices(costs, n)
        config = TimestepScheduleConfig(reference_steps=reference_steps, indices=indices)
        write_json(os.path.join(folder, f"schedule_{n}.json"), config.to_dict())
        even = path_cost(costs, evenly_spaced(reference_steps, n))
        results[n] = {"config": config, "cost": cost / len(items), "evenly_spaced_cost": even / len(items)}
    return results
