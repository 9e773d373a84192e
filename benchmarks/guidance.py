"""Adaptive guidance on the built-in models: NFEs, wall time and quality across a sweep of gamma, against
plain CFG, the fixed CFG cut-off of diffusers' CFGCutoffCallbacks at (about) equal NFEs, LinearAG, and fewer steps.

Quality is measured on 3 disjoint seed folds: PSNR/SSIM to plain CFG of the same seeds, domain FID
and prompt alignment. "Within CFG's spread" means within 2 standard deviations of plain CFG's
fold-to-fold spread (FID and alignment).

    python -m benchmarks.guidance --models sd-digits sd3-shapes --out benchmarks/results/guidance
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time

import torch

import accel
from accel.evaluation.prompts import builtin_prompts
from accel.metrics.domain import DomainMetrics
from accel.metrics.fidelity import psnr, ssim
from accel.pipelines.builtin import BUILTIN_MODELS
from accel.tuning.linear_ag_fit import calibrate

from .common import batches, fold_items, folds_parser, load_quiet, mean_std, per_model, plus_minus, sample, table

PER_FOLD = {"sd-digits": 60, "sd3-shapes": 60, "pixart-shapes": 60, "wan-moving-shapes": 48}


@torch.no_grad()
def run(pipe, model: str, setting: dict, fold: int, steps: int, guidance: float) -> dict:
    prompts, seeds = fold_items(model, PER_FOLD[model], 700_000 + 10_000 * fold)
    call = dict(BUILTIN_MODELS[model].call_defaults)
    call.update(num_inference_steps=setting.get("steps", steps), guidance_scale=guidance)
    accel.apply(pipe, *setting.get("configs", []))
    images, nfe, seconds = [], 0.0, 0.0
    try:
        for chunk, chunk_seeds in batches(prompts, seeds, 30):
            start = time.perf_counter()
            images.append(sample(pipe, chunk, chunk_seeds, call))
            seconds += time.perf_counter() - start
            nfe += accel.summary(pipe)["last_call"]["nfe"] * len(chunk)
    finally:
        accel.remove(pipe)
    return {
        "images": torch.cat(images),
        "nfe": nfe / len(prompts),
        "seconds": seconds / len(prompts),
        "prompts": prompts,
    }


def benchmark(model: str, steps: int, guidance: float, folds: int, gammas: list[float], out: str) -> dict:
    pipe = load_quiet(model)
    domain = DomainMetrics(BUILTIN_MODELS[model].dataset)
    video = model == "wan-moving-shapes"
    # videos: the sensitivity report's 480-clip reference (a Frechet distance needs many more clips than features)
    real = domain.real_samples(480, seed=999) if video else domain.real_samples(PER_FOLD[model] * 2, seed=11)
    coef = os.path.join(tempfile.mkdtemp(), "coef.json")
    cal_call = dict(BUILTIN_MODELS[model].call_defaults, num_inference_steps=steps, guidance_scale=guidance)
    calibrate(pipe, builtin_prompts(model)[:8], cal_call, seeds=[1, 2], history=2, out=coef, model_name=model)
    settings = [{"name": "CFG", "configs": []}]
    settings += [{"name": f"AG gamma={g}", "configs": [accel.AdaptiveGuidanceConfig(threshold=g)]} for g in gammas]
    settings += [
        {
            "name": f"LinearAG every {k}",
            "configs": [accel.LinearAGConfig(coefficients=coef, predict_every=k, predict_until=0.5, threshold=0.99)],
        }
        for k in (2, 3)
    ]
    for frac in (0.5, 0.65, 0.8):
        # the fixed cut-off of diffusers' SD/SDXL/SD3 CFGCutoffCallbacks (CFG on steps < k); the callbacks
        # themselves keep prompt_embeds[-1:] and so only work at batch 1, hence the same rule through accel
        k = round(steps * frac)
        settings.append(
            {
                "name": f"fixed CFG cut-off at step {k}",
                "configs": [accel.AdaptiveGuidanceConfig(threshold=2.0, max_step=k)],
            }
        )
    fewer = sorted({round(steps * 0.75), round(steps * 0.6), steps // 2} - {steps}, reverse=True)
    settings += [{"name": f"{k} steps", "steps": k, "configs": []} for k in fewer]

    rows, cfg = [], {}
    for setting in settings:
        per = {"fid": [], "video_fid": [], "alignment": [], "psnr": [], "ssim": [], "nfe": [], "seconds": []}
        for fold in range(folds):
            result = run(pipe, model, setting, fold, steps, guidance)
            if setting["name"] == "CFG":
                cfg[fold] = result["images"]
            per["fid"].append(domain.fid(real, result["images"]))
            per["alignment"].append(float(domain.alignment(result["images"], result["prompts"]).mean()))
            if video:
                per["video_fid"].append(domain.video_fid(real, result["images"]))
            per["nfe"].append(result["nfe"])
            per["seconds"].append(result["seconds"])
            if setting["name"] != "CFG":
                per["psnr"].append(float(psnr(result["images"], cfg[fold]).clamp(max=100).mean()))
                per["ssim"].append(float(ssim(result["images"], cfg[fold]).mean()))
        row = {"setting": setting["name"], **{k: mean_std(v) for k, v in per.items() if v}}
        rows.append(row)
        print(model, {k: v for k, v in row.items()}, flush=True)
    base = rows[0]
    for row in rows:
        row["nfe_saving"] = 1 - row["nfe"][0] / base["nfe"][0]
        row["wall_speedup"] = base["seconds"][0] / row["seconds"][0]
        row["fid_within_cfg_spread"] = abs(row["fid"][0] - base["fid"][0]) <= 2 * max(base["fid"][1], 1e-9)
        row["alignment_within_cfg_spread"] = abs(row["alignment"][0] - base["alignment"][0]) <= 2 * max(
            base["alignment"][1], 1e-9
        )
        if video:
            row["video_fid_within_cfg_spread"] = abs(row["video_fid"][0] - base["video_fid"][0]) <= 2 * max(
                base["video_fid"][1], 1e-9
            )
    result = {
        "model": model,
        "steps": steps,
        "guidance": guidance,
        "folds": folds,
        "samples_per_fold": PER_FOLD[model],
        "rows": rows,
    }
    with open(os.path.join(out, f"{model}.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def write_markdown(results: list[dict], path: str) -> None:
    lines = ["# Adaptive guidance benchmark (benchmarks/guidance.py)", ""]
    yes = lambda flag: "yes" if flag else "no"  # noqa: E731
    for r in results:
        video = "video_fid" in r["rows"][0]
        fids = ["fid", "video_fid"] if video else ["fid"]
        header = ["setting", "NFEs", "NFE saving", "wall speedup", "PSNR to CFG", "SSIM to CFG", "FID"]
        header += (["video FID"] if video else []) + ["alignment"]
        header.append("within CFG spread (FID / " + ("video FID / " if video else "") + "align)")
        cells = [
            [
                row["setting"],
                f"{row['nfe'][0]:.1f}",
                f"{row['nfe_saving']:.0%}",
                f"{row['wall_speedup']:.2f}x",
                *(plus_minus(row.get(k)) for k in ("psnr", "ssim", *fids, "alignment")),
                " / ".join(yes(row[f"{k}_within_cfg_spread"]) for k in (*fids, "alignment")),
            ]
            for row in r["rows"]
        ]
        lines += [
            f"## {r['model']} ({r['steps']} steps, guidance {r['guidance']:g}, {r['folds']} seed folds x "
            f"{r['samples_per_fold']} samples)",
            "",
            *table(header, cells),
            "",
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    parser = folds_parser(__doc__.split("\n\n")[0], PER_FOLD, "benchmarks/results/guidance")
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.9, 0.95, 0.98, 0.99, 0.995, 0.999])
    args = parser.parse_args()
    run = functools.partial(
        benchmark, steps=args.steps, guidance=args.guidance, folds=args.folds, gammas=args.gammas, out=args.out
    )
    write_markdown(per_model(args, PER_FOLD, run), os.path.join(args.out, "guidance.md"))


if __name__ == "__main__":
    main()
