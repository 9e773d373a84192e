"""How much a searched timestep schedule alone gains over plain fewer steps, per built-in model and step count.

For each model, :func:`accel.tuning.schedule_search.search_schedules` chooses N of the 50 levels of the
scheduler's own schedule on calibration prompts (the first ``--calibration`` built-in prompts, seed 0).
Then, on held-out prompts and seeds, each N-step setting is compared with the 50-step generation of the
same prompt and seed (PSNR and SSIM, mean and spread over samples):

* ``plain``: the pipeline at N steps, as shipped (its scheduler's default spacing);
* ``searched``: the same scheduler at N steps on the searched levels.

sd-digits ships DDIM, whose step spaces levels evenly and so cannot take a schedule; its rows run
DPM-Solver++ (``DPMSolverMultistepScheduler`` from the same config) for ``searched`` and show both
DDIM and DPM-Solver++ as plain rivals. Every model's reference is its shipped scheduler at 50 steps.

    python -m benchmarks.schedule_search                       # all four built-in diffusion models
    python -m benchmarks.schedule_search --models sd3-shapes --steps 4 8

Results: ``benchmarks/results/schedule_search.{json,md}``; the searched schedules and their resumable
reference costs in ``benchmarks/results/schedule_search/<model>/``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import torch

import accel
from accel.cli import add_device_arguments
from accel.evaluation.prompts import builtin_prompts
from accel.metrics.fidelity import psnr, ssim
from accel.pipelines.builtin import BUILTIN_MODELS
from accel.tuning.schedule_search import search_schedules

from .common import load_quiet, sample, table, write_results

RESULTS = os.path.join(os.path.dirname(__file__), "results")
MODELS = ("sd-digits", "pixart-shapes", "sd3-shapes", "wan-moving-shapes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--steps", nargs="+", type=int, default=[4, 6, 8, 10])
    p.add_argument("--reference", type=int, default=50, help="steps of the reference schedule and generation")
    p.add_argument("--calibration", type=int, default=8, help="calibration prompts (seed 0)")
    p.add_argument("--held-out", type=int, default=16, help="held-out samples (later prompts, seeds from 1000)")
    p.add_argument("--out", default=os.path.join(RESULTS, "schedule_search"))
    add_device_arguments(p)
    return p.parse_args(argv)


def _with_solver(pipe: Any, solver: str | None) -> Any:
    """The pipeline with its scheduler swapped for ``solver`` (None: as shipped)."""
    if solver == "dpm++":
        from diffusers import DPMSolverMultistepScheduler

        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    return pipe


def _generate(
    model: str,
    solver: str | None,
    configs: list[Any],
    prompts: list[str],
    seeds: list[int],
    call: dict,
    args: argparse.Namespace,
) -> torch.Tensor:
    pipe = _with_solver(load_quiet(model, args.device, args.dtype), solver)
    if configs:
        accel.apply(pipe, *configs)
    with torch.no_grad():
        return torch.cat([sample(pipe, [p], [s], call).cpu() for p, s in zip(prompts, seeds)])


def _scores(images: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    values = {"psnr": psnr(images, reference).tolist(), "ssim": ssim(images, reference).tolist()}
    out = {}
    for name, v in values.items():
        out[name] = round(statistics.fmean(v), 3 if name == "psnr" else 4)
        out[name + "_std"] = round(statistics.stdev(v), 3 if name == "psnr" else 4) if len(v) > 1 else 0.0
    return out


def run_model(model: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    call = dict(BUILTIN_MODELS[model].call_defaults)
    prompts = builtin_prompts(model)
    calibration = prompts[: args.calibration]
    held = [prompts[(args.calibration + i) % len(prompts)] for i in range(args.held_out)]
    seeds = [1000 + i for i in range(args.held_out)]
    solver = "dpm++" if model == "sd-digits" else None
    searcher = _with_solver(load_quiet(model, args.device, args.dtype), solver)
    found = search_schedules(
        searcher, calibration, [0], call, args.steps, os.path.join(args.out, model), args.reference
    )
    reference = _generate(model, None, [], held, seeds, {**call, "num_inference_steps": args.reference}, args)
    rows = []
    plain_solvers = [None, "dpm++"] if solver else [None]
    for n in args.steps:
        step_call = {**call, "num_inference_steps": n}
        setups = [(f"plain ({s or 'shipped'})", s, []) for s in plain_solvers]
        setups.append((f"searched ({solver or 'shipped'})", solver, [found[n]["config"]]))
        for name, which, configs in setups:
            images = _generate(model, which, configs, held, seeds, step_call, args)
            row = {"model": model, "steps": n, "setup": name, **_scores(images, reference)}
            if configs:
                row["indices"] = list(found[n]["config"].indices)
                row["predicted_cost"], row["evenly_spaced_cost"] = found[n]["cost"], found[n]["evenly_spaced_cost"]
            rows.append(row)
            print(row)
    return rows


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    lines = [
        "# A searched timestep schedule against plain fewer steps",
        "",
        f"Held-out samples ({args.held_out} per model, seeds from 1000) against the same prompt and seed at "
        f"{args.reference} steps with the shipped scheduler; schedules searched on {args.calibration} other "
        "prompts (seed 0). Command: `python -m benchmarks.schedule_search`.",
        "",
        *table(
            ["model", "steps", "setting", "PSNR dB", "SSIM", "searched levels"],
            (
                [
                    r["model"],
                    r["steps"],
                    r["setup"],
                    f"{r['psnr']} ± {r['psnr_std']}",
                    f"{r['ssim']} ± {r['ssim_std']}",
                    ", ".join(map(str, r.get("indices", []))),
                ]
                for r in rows
            ),
        ),
    ]
    write_results(args.out, {"args": vars(args), "rows": rows}, lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = [row for model in args.models for row in run_model(model, args)]
    write(rows, args)


if __name__ == "__main__":
    main()
