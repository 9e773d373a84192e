"""Forecasting caches against reuse, the forecasting peers and fewer steps, with seed-fold spreads.

Setups (same prompts and seeds): fewer sampling steps; accel FORA every-N with reuse (order 0) and
with TaylorSeer-style forecasting (order 1, 2); schedules from ``accel search-cache --forecast-order
1`` (every JSON in ``--front``); diffusers' TaylorSeerCache, FirstBlockCache and MagCache
(calibrated here); cache-dit's DBCache with and without its TaylorSeer calibrator.

Reports per setup: the denoiser FLOP speedup (FLOPs counted while it runs), PSNR to the uncached
output, domain FID (video FID for videos) and prompt alignment, each as the mean over ``--folds``
disjoint seed folds with its standard deviation across folds, and the PSNR of fewer steps at the
same FLOPs (log-linear interpolation between step counts, never extrapolated).

    python benchmarks/forecast_caching.py --model pixart-shapes --samples 120 --front runs/search-pixart-f/front
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import statistics
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))

from dit_caching import Setup, _fresh, calibrate_mag_ratios, diffusers_hook, workload  # noqa: E402

import accel  # noqa: E402
from accel.metrics.cost import ModuleFlops, count_flops  # noqa: E402
from accel.metrics.fidelity import psnr  # noqa: E402
from accel.pipelines.registry import lookup  # noqa: E402


@torch.no_grad()
def generate(pipe, setup: Setup, prompts: list[str], seeds: list[int], call: dict, batch: int):
    """Images (or videos) in [0, 1] and the FLOPs of ``setup``'s first batch (the denoiser's, or the whole
    pipeline's for peers whose patched forward recurses under a module hook; counting costs about 4x)."""
    kwargs = {**call, **({"num_inference_steps": setup.steps} if setup.steps else {})}
    pipe = setup.fresh_pipe() if setup.fresh_pipe else pipe
    setup.attach(pipe)
    outputs, flops = [], 0
    try:
        for i in range(0, len(prompts), batch):
            if i == 0:
                counter = count_flops() if setup.whole_pipeline_flops else ModuleFlops(pipe.transformer)
            else:
                counter = contextlib.nullcontext()
            with counter as counted:
                out = pipe(
                    prompt=prompts[i : i + batch],
                    generator=[torch.Generator().manual_seed(s) for s in seeds[i : i + batch]],
                    output_type="pt",
                    **kwargs,
                )
            if i == 0:
                flops = counted["total"] if setup.whole_pipeline_flops else counted.total
            outputs.append((out.frames if hasattr(out, "frames") else out.images).float().clamp(0, 1))
    finally:
        setup.detach(pipe)
    return torch.cat(outputs), flops


def identifiers(pipe) -> list[str]:
    """diffusers' cache identifiers for every cacheable component of the family, from accel's adapter."""
    adapter = lookup(pipe.transformer)
    names = "|".join(adapter.component_names())
    return [rf"^{prefix}\.\d+\.({names})$" for prefix in adapter.block_lists]


def setups(pipe, call: dict, prompt: str, front: str | None, model: str) -> tuple[list[Setup], dict[str, str]]:
    from diffusers.hooks import (
        FirstBlockCacheConfig,
        MagCacheConfig,
        TaylorSeerCacheConfig,
        apply_first_block_cache,
        apply_mag_cache,
        apply_taylorseer_cache,
    )

    out = [Setup("baseline", "baseline")]
    out += [Setup(f"{k} steps", "fewer steps", steps=k) for k in (16, 14, 12, 10, 8, 7, 6, 5)]
    for n in (2, 3, 4):
        for order in (0, 1, 2):
            out.append(
                Setup(
                    f"FORA N={n} order {order}",
                    "accel BlockCache (reuse)" if order == 0 else f"accel BlockCache forecast order {order}",
                    lambda p, n=n, k=order: accel.apply(p, accel.BlockCacheConfig(interval=n, forecast_order=k)),
                    lambda p: accel.remove(p),
                )
            )
    for path in sorted(glob.glob(os.path.join(front, "*.json"))) if front else []:
        out.append(
            Setup(
                f"searched {os.path.basename(path)[:-5]}",
                "accel searched (forecast per unit)",
                lambda p, path=path: accel.apply(p, accel.BlockCacheConfig(schedule=path)),
                lambda p: accel.remove(p),
            )
        )
    ids = identifiers(pipe)
    for n in (2, 3, 4):
        for order in (1, 2):
            out.append(
                diffusers_hook(
                    f"TaylorSeer N={n} order {order}",
                    "diffusers TaylorSeer",
                    lambda p, n=n, k=order: apply_taylorseer_cache(
                        p.transformer,
                        TaylorSeerCacheConfig(
                            cache_interval=n,
                            disable_cache_before_step=2,
                            max_order=k,
                            taylor_factors_dtype=torch.float32,
                            cache_identifiers=ids,
                        ),
                    ),
                )
            )
    for t in (0.1, 0.2):
        out.append(
            diffusers_hook(
                f"FirstBlockCache t={t}",
                "diffusers FirstBlockCache",
                lambda p, t=t: apply_first_block_cache(p.transformer, FirstBlockCacheConfig(threshold=t)),
            )
        )
    notes: dict[str, str] = {}
    try:
        ratios = calibrate_mag_ratios(pipe, call, prompt)
        if not ratios:
            raise RuntimeError("MagCache calibration printed no ratios")
        for t in (0.1, 0.2):
            out.append(
                diffusers_hook(
                    f"MagCache t={t}",
                    "diffusers MagCache",
                    lambda p, t=t: apply_mag_cache(
                        p.transformer,
                        MagCacheConfig(
                            threshold=t,
                            num_inference_steps=call["num_inference_steps"],
                            mag_ratios=ratios,
                            max_skip_steps=3,
                        ),
                    ),
                )
            )
    except Exception as exc:
        notes["MagCache"] = f"not run: {type(exc).__name__}: {exc}"
    out += cache_dit_setups(notes, model)
    return out, notes


def cache_dit_setups(notes: dict[str, str], model: str) -> list[Setup]:
    try:
        import cache_dit
        from cache_dit import DBCacheConfig, TaylorSeerCalibratorConfig
    except Exception as exc:
        notes["cache-dit"] = f"not run: {type(exc).__name__}: {exc}"
        return []
    out = []
    for t in (0.16, 0.3):
        for taylor in (False, True):

            def attach(p, t=t, taylor=taylor):
                calibrator = TaylorSeerCalibratorConfig(taylorseer_order=1) if taylor else None
                config = DBCacheConfig(
                    Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=t, max_warmup_steps=2
                )
                cache_dit.enable_cache(p, cache_config=config, calibrator_config=calibrator)

            name = f"cache-dit DBCache t={t}" + (" + TaylorSeer" if taylor else "")
            family = "cache-dit DBCache" + (" + TaylorSeer" if taylor else "")
            fresh = lambda: _fresh(model)  # noqa: E731  (cache-dit patches the pipeline for good)
            out.append(
                Setup(name, family, attach, cache_dit.disable_cache, fresh_pipe=fresh, whole_pipeline_flops=True)
            )
    return out


def fold_stats(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def score(images, baseline, prompts, domain, real, folds: int, video: bool) -> dict[str, float]:
    """Mean and fold standard deviation of PSNR, FID and alignment (folds = samples ``i % folds``)."""
    row: dict[str, float] = {}
    per_fold: dict[str, list[float]] = {"psnr": [], "fid": [], "alignment": []}
    for f in range(folds):
        idx = list(range(f, len(images), folds))
        sub, ref = images[idx], baseline[idx]
        per_fold["psnr"].append(float(psnr(sub, ref).clamp(max=100).mean()))
        per_fold["fid"].append(domain.video_fid(real, sub) if video else domain.fid(real, sub))
        per_fold["alignment"].append(float(domain.alignment(sub, [prompts[i] for i in idx]).mean()))
    for metric, values in per_fold.items():
        row[metric], row[f"{metric}_fold_std"] = fold_stats(values)
    return row


def fewer_steps_reference(rows: list[dict]) -> None:
    """PSNR/FID/alignment of fewer steps at each setup's FLOP speedup (interpolated, never extrapolated)."""
    fewer = sorted([r for r in rows if r["family"] in ("fewer steps", "baseline")], key=lambda r: r["flop_speedup"])
    xs = np.log([r["flop_speedup"] for r in fewer])
    for row in rows:
        x = math.log(row["flop_speedup"])
        if row["family"] in ("baseline", "fewer steps") or not xs[0] - 1e-9 <= x <= xs[-1] + 1e-9:
            continue
        for metric in ("psnr", "fid", "alignment"):
            points = [(xx, r[metric]) for xx, r in zip(xs, fewer) if math.isfinite(r[metric]) and r[metric] < 100]
            if len(points) >= 2 and points[0][0] <= x <= points[-1][0]:
                row[f"{metric}_fewer_steps"] = float(np.interp(x, [p[0] for p in points], [p[1] for p in points]))


def write(rows: list[dict], notes: dict, out: str, meta: dict) -> None:
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows, "notes": notes}, f, indent=2)
    lines = [
        f"`{meta['model']}`, {meta['steps']} steps, {meta['samples']} samples in {meta['folds']} seed folds "
        "(mean ± std across folds); FLOPs = denoiser FLOPs counted while it runs; PSNR to the uncached output.",
        "",
        "| setup | family | FLOP speedup | PSNR dB | fewer steps at same FLOPs | FID | alignment |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["family"], r["flop_speedup"])):
        ref = r.get("psnr_fewer_steps")
        versus = "-" if ref is None else f"{ref:.2f} ({r['psnr'] - ref:+.2f})"
        lines.append(
            f"| {r['setup']} | {r['family']} | {r['flop_speedup']:.2f}x | "
            f"{r['psnr']:.2f} ± {r['psnr_fold_std']:.2f} | "
            f"{versus} | {r['fid']:.3f} ± {r['fid_fold_std']:.3f} | "
            f"{r['alignment']:.3f} ± {r['alignment_fold_std']:.3f} |"
        )
    lines += ["", *[f"- {k}: {v}" for k, v in notes.items()]]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(rows, out + ".png", meta["model"])


def plot(rows: list[dict], path: str, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, metric in zip(axes, ("psnr", "fid")):
        for family in sorted({r["family"] for r in rows}):
            pts = sorted(
                [r for r in rows if r["family"] == family and r[metric] < 100], key=lambda r: r["flop_speedup"]
            )
            style = "--o" if family == "fewer steps" else "o-" if "accel" in family else "s:"
            ax.errorbar(
                [r["flop_speedup"] for r in pts],
                [r[metric] for r in pts],
                yerr=[r[f"{metric}_fold_std"] for r in pts],
                fmt=style,
                ms=4,
                capsize=2,
                label=family,
            )
        ax.set_xlabel("denoiser FLOP speedup (x)")
        ax.set_ylabel({"psnr": "PSNR to uncached (dB)", "fid": "domain FID (lower is better)"}[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{model}: forecasting caches vs reuse, peers and fewer steps (error bars: fold std)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="pixart-shapes", choices=["pixart-shapes", "sd3-shapes", "wan-moving-shapes"]
    )
    parser.add_argument("--samples", type=int, default=120)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--front", default=None, help="searched schedules (accel search-cache --out DIR: DIR/front)")
    parser.add_argument("--batch", type=int, default=30)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", nargs="+", default=None, help="keep only setups whose family contains one of these")
    args = parser.parse_args()
    out = args.out or f"benchmarks/results/forecast_caching/{args.model}"

    pipe, call, prompts, seeds, domain, real = workload(args.model, args.steps, args.samples, 90_000, 11)
    video = args.model.startswith("wan")
    all_setups, notes = setups(pipe, call, prompts[0], args.front, args.model)
    if args.only:
        keep = ("baseline", *args.only)
        all_setups = [s for s in all_setups if any(word in s.family for word in keep)]
    rows, baseline, base_flops, outside = [], None, None, None
    from tqdm.auto import tqdm

    for setup in tqdm(all_setups, desc=args.model, unit="setup"):
        if setup.whole_pipeline_flops and outside is None:  # text encoder and VAE FLOPs, to take off
            whole = Setup("baseline, whole pipeline", "baseline", whole_pipeline_flops=True)
            outside = (
                generate(pipe, whole, prompts[: args.batch], seeds[: args.batch], call, args.batch)[1] - base_flops
            )
        try:
            images, flops = generate(pipe, setup, prompts, seeds, call, args.batch)
        except Exception as exc:
            notes[setup.name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            continue
        flops -= outside if setup.whole_pipeline_flops else 0
        if baseline is None:
            baseline, base_flops = images, flops
        row = {"setup": setup.name, "family": setup.family, "flop_speedup": base_flops / flops}
        row.update(score(images, baseline, prompts, domain, real, args.folds, video))
        rows.append(row)
        tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    fewer_steps_reference(rows)
    meta = {"model": args.model, "steps": args.steps, "samples": args.samples, "folds": args.folds}
    write(rows, notes, out, meta)
    print(f"wrote {out}.md / .json / .png")


if __name__ == "__main__":
    main()
