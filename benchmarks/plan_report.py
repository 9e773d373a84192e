"""Markdown table of a tuned plan against the fewer-steps rivals it was validated with.

    python -m benchmarks.plan_report runs/tune-sd3-shapes [--eval runs/eval-plans/sd3-shapes-plan]

For every plan setting: held-out FLOP speedup, PSNR promised (calibration) and validated (held out),
the best fewer-steps rival's PSNR at the same speedup and which rival it is, the margin, and the paired
wall-clock speedup. The rivals are the plan's three held-out curves (``plan.info``): plain fewer steps,
fewer steps on the searched schedule, and fewer steps with the best other solver. Each is interpolated
linearly in log-speedup between measured step counts (none beyond its fewest steps). A setting that is
only a sampler change (solver and/or schedule) is a rival itself and gets no margin. With ``--eval``
(the ``accel eval`` run of the plan's ``eval.yaml``) FID and alignment come from that run, with the
baseline's fold spread.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import accel
from accel.sampling.solver import SolverConfig
from accel.sampling.timestep_schedule import TimestepScheduleConfig

RIVALS = {"fewer_steps": "plain", "searched_schedule": "schedule", "best_solver": "solver"}
SAMPLER_CONFIGS = (SolverConfig, TimestepScheduleConfig)


def interpolated_psnr(curve: list[dict], speedup: float) -> float | None:
    points = sorted((r["speedup"], r["psnr"]) for r in curve if r["psnr"] < 100)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= speedup <= x1:
            t = (math.log(speedup) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + t * (y1 - y0)
    return None


def best_rival(info: dict, speedup: float) -> tuple[float, str] | None:
    """The strongest of the plan's rival curves at ``speedup``: (PSNR, which rival), or None beyond them all."""
    found = [
        (psnr, name)
        for key, name in RIVALS.items()
        if (psnr := interpolated_psnr(info.get(key) or [], speedup)) is not None
    ]
    return max(found) if found else None


def eval_rows(run_dir: str | None) -> dict[str, dict]:
    if not run_dir:
        return {}
    with open(os.path.join(run_dir, "summary.json")) as f:
        return {row["config"]: row for row in json.load(f)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan")
    parser.add_argument("--eval", default=None, help="the accel eval run folder of the plan's eval.yaml")
    args = parser.parse_args()
    plan = accel.load_plan(args.plan)
    rows = eval_rows(args.eval)
    base = rows.get("baseline", {})
    header = "| setting | FLOP speedup | PSNR promised | PSNR held out | best rival at same FLOPs | margin | wall |"
    if rows:
        header += " FID | alignment |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for s in plan.settings:
        if not s.plugins or s.speedup < 1.001:
            continue
        rival = best_rival(plan.info, s.speedup)
        sampler_only = all(isinstance(c, SAMPLER_CONFIGS) for c in s.plugins)
        margin = "a rival itself" if sampler_only else "" if rival is None else f"{s.psnr - rival[0]:+.1f} dB"
        line = (
            f"| {s.num_inference_steps} steps + {' + '.join(str(c) for c in s.plugins)} | {s.speedup:.2f}x | "
            f"{s.quality['promised']['psnr']:.1f} | {s.psnr:.1f} | "
            f"{'' if rival is None else f'{rival[0]:.1f} ({rival[1]})'} | {margin} | "
            f"{'' if s.wall_speedup is None else f'{s.wall_speedup:.2f}x'} |"
        )
        if rows:
            name = "+".join(str(c) for c in s.plugins)
            if s.num_inference_steps != plan.info["baseline_steps"]:
                name = f"steps{s.num_inference_steps}+{name}"
            row = rows.get(name, {})
            line += f" {_fmt(row, 'fid')} | {_fmt(row, 'alignment')} |"
        print(line)
    if rows:
        print(f"\nbaseline: FID {_fmt(base, 'fid')}, alignment {_fmt(base, 'alignment')}")
        for r in sorted(
            (r for n, r in rows.items() if n.startswith("steps") and "+" not in n), key=lambda r: r["config"]
        ):
            print(f"{r['config']}: FID {_fmt(r, 'fid')}, alignment {_fmt(r, 'alignment')}")
    gap = plan.info["overfitting"]
    print(
        f"\noverfitting: calibration promised {gap['mean_promised_minus_validated']:+.2f} dB more than held out "
        f"(mean), worst {gap['max_promised_minus_validated']:+.2f} dB"
    )


def _fmt(row: dict, metric: str) -> str:
    value = row.get(metric)
    if value is None:
        return ""
    spread = row.get(f"{metric}_std")
    return f"{value:.3g}" + (f" ± {spread:.2g}" if spread is not None else "")


if __name__ == "__main__":
    main()
