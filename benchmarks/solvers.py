"""Which solver is the strongest fewer-steps rival, per built-in model: every solver that fits the model
(``accel.SolverConfig``: DDIM, Euler, flow Euler, DPM-Solver++ 2M, UniPC) at N steps against the 50-step
generation of the shipped scheduler, on held-out prompts and seeds (PSNR and SSIM, mean and spread).

The best solver (highest mean PSNR over the step counts) is the "best solver" rival curve of the
default ``accel eval`` sweep (:data:`accel.evaluation.defaults.BEST_SOLVER`).

    python -m benchmarks.solvers                                  # all four built-in diffusion models
    python -m benchmarks.solvers --models sd-digits --steps 4 8

Results: ``benchmarks/results/solvers.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import accel
from accel.cli import add_device_arguments
from accel.evaluation.prompts import builtin_prompts
from accel.pipelines.builtin import BUILTIN_MODELS
from accel.sampling.schedulers import is_flow_matching
from accel.sampling.solver import FLOW_SOLVERS, VP_SOLVERS, solver_problem

from .common import load_quiet, table, write_results
from .schedule_search import _generate, _scores

RESULTS = os.path.join(os.path.dirname(__file__), "results")
MODELS = ("sd-digits", "pixart-shapes", "sd3-shapes", "wan-moving-shapes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--steps", nargs="+", type=int, default=[5, 8, 12])
    p.add_argument("--reference", type=int, default=50, help="steps of the reference generation")
    p.add_argument("--held-out", type=int, default=8, help="held-out samples (prompts from the 9th, seeds from 1000)")
    p.add_argument("--out", default=os.path.join(RESULTS, "solvers"))
    add_device_arguments(p)
    return p.parse_args(argv)


def run_model(model: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    call = dict(BUILTIN_MODELS[model].call_defaults)
    prompts = builtin_prompts(model)
    held = [prompts[(8 + i) % len(prompts)] for i in range(args.held_out)]
    seeds = [1000 + i for i in range(args.held_out)]
    scheduler = load_quiet(model).scheduler
    shipped = type(scheduler).__name__
    solvers = [
        s for s in (FLOW_SOLVERS if is_flow_matching(scheduler) else VP_SOLVERS) if not solver_problem(scheduler, s)
    ]
    reference = _generate(model, None, [], held, seeds, {**call, "num_inference_steps": args.reference}, args)
    rows = []
    for n in args.steps:
        for solver in solvers:
            images = _generate(
                model, None, [accel.SolverConfig(solver=solver)], held, seeds, {**call, "num_inference_steps": n}, args
            )
            row = {"model": model, "shipped": shipped, "steps": n, "solver": solver, **_scores(images, reference)}
            rows.append(row)
            print(row, flush=True)
    return rows


def best_solvers(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per model, the solver with the highest PSNR averaged over the step counts."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        means = {
            s: statistics.fmean(r["psnr"] for r in rows if r["model"] == model and r["solver"] == s)
            for s in dict.fromkeys(r["solver"] for r in rows if r["model"] == model)
        }
        out[model] = max(means, key=means.get)
    return out


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    best = best_solvers(rows)
    lines = [
        "# Which solver is the strongest fewer-steps rival",
        "",
        f"Held-out samples ({args.held_out} per model, seeds from 1000) at N steps with each solver, against the "
        f"same prompt and seed at {args.reference} steps with the shipped scheduler. Command: "
        "`python -m benchmarks.solvers`.",
        "",
        *table(
            ["model (shipped scheduler)", "steps", "solver", "PSNR dB", "SSIM"],
            (
                [
                    f"{r['model']} ({r['shipped']})",
                    r["steps"],
                    f"**{r['solver']}**" if best[r["model"]] == r["solver"] else r["solver"],
                    f"{r['psnr']} ± {r['psnr_std']}",
                    f"{r['ssim']} ± {r['ssim_std']}",
                ]
                for r in rows
            ),
        ),
        "",
        "Best solver (bold, highest mean PSNR over the step counts): "
        + ", ".join(f"{m}: {s}" for m, s in best.items())
        + ".",
    ]
    write_results(args.out, {"args": vars(args), "rows": rows, "best": best}, lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = [row for model in args.models for row in run_model(model, args)]
    write(rows, args)


if __name__ == "__main__":
    main()
