"""Forecasting caches against reuse, the forecasting peers and fewer steps, with seed-fold spreads.

Setups on a DiT (same prompts and seeds): fewer sampling steps; accel FORA every-N with reuse (order
0) and with TaylorSeer-style forecasting (order 1, 2), with and without 2 dense warm-up steps (what
TaylorSeer and cache-dit keep); schedules from ``accel search-cache --forecast-order 1`` (every JSON in
``--front``); diffusers' TaylorSeerCache, FirstBlockCache and MagCache (calibrated here); cache-dit's
DBCache with and without its TaylorSeer calibrator.

On a U-Net (``sd-digits``): DeepCache at intervals 3, 5 and 10 with reuse and with forecasts of the deep
features, against the official ``DeepCache`` package (``DeepCacheSDHelper``, installed by hand) at the
same branch numbers, and fewer steps; the report notes the largest difference between accel's reuse and
the package.

Reports per setup: the denoiser FLOP speedup (FLOPs counted while it runs), PSNR to the uncached
output, domain FID (video FID for videos) and prompt alignment, each as the mean over ``--folds``
disjoint seed folds with its standard deviation across folds, and the PSNR of fewer steps at the
same FLOPs (log-linear interpolation between step counts, never extrapolated).

    python -m benchmarks.forecast_caching --model pixart-shapes --samples 120 --front runs/search-pixart-f/front
    python -m benchmarks.forecast_caching --model sd-digits --samples 120

``--merge`` keeps the rows of an earlier run of the same model, steps, samples and folds and runs only the
setups it lacks (the baseline always runs again: it is every row's reference). The tables are rewritten
after every setup, so ``--merge`` also resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os

import numpy as np
import torch

import accel
from accel.metrics.fidelity import psnr
from accel.pipelines.registry import lookup

from .common import (
    Setup,
    accel_setup,
    batches,
    diffusers_hook,
    load_quiet,
    mag_cache_setups,
    mean_std,
    reference_setups,
    sample,
    speedup_figure,
    table,
    workload,
    write_results,
)


@torch.no_grad()
def generate(pipe, setup: Setup, prompts: list[str], seeds: list[int], call: dict, batch: int):
    """Images (or videos) in [0, 1] and the FLOPs of ``setup``'s first batch (the denoiser's, or the whole
    pipeline's for peers whose patched forward recurses under a module hook; counting costs about 4x)."""
    kwargs = {**call, **({"num_inference_steps": setup.steps} if setup.steps else {})}
    pipe = setup.fresh_pipe() if setup.fresh_pipe else pipe
    setup.attach(pipe)
    try:
        chunks = batches(prompts, seeds, batch)
        with setup.flops(pipe) as counted:
            outputs = [sample(pipe, *next(chunks), kwargs)]
        outputs += [sample(pipe, *chunk, kwargs) for chunk in chunks]
    finally:
        setup.detach(pipe)
    return torch.cat(outputs), counted["total"]


def identifiers(pipe) -> list[str]:
    """diffusers' cache identifiers for every cacheable component of the family, from accel's adapter."""
    adapter = lookup(pipe.transformer)
    names = "|".join(adapter.component_names())
    return [rf"^{prefix}\.\d+\.({names})$" for prefix in adapter.block_lists]


def fora(n: int, order: int, warmup: int) -> Setup:
    family = "accel BlockCache (reuse)" if order == 0 else f"accel BlockCache forecast order {order}"
    return accel_setup(
        f"FORA N={n} order {order}" + (f" warm-up {warmup}" if warmup else ""),
        family + (f", warm-up {warmup}" if warmup else ""),
        accel.BlockCacheConfig(interval=n, forecast_order=order, warmup_steps=warmup),
    )


def unet_setups() -> tuple[list[Setup], dict[str, str]]:
    """DeepCache with reuse and forecasts against the official package at the same branch, and fewer steps."""
    out = reference_setups((16, 14, 12, 10, 8, 7, 6, 5, 4, 3))
    for n in (3, 5, 10):
        for order in (0, 1, 2):
            out.append(
                accel_setup(
                    f"DeepCache N={n} branch 0 order {order}",
                    "accel DeepCache (reuse)" if order == 0 else f"accel DeepCache forecast order {order}",
                    accel.DeepCacheConfig(interval=n, branch=0, forecast_order=order),
                )
            )
    notes: dict[str, str] = {}
    try:
        from DeepCache import DeepCacheSDHelper
    except ImportError as exc:
        notes["official DeepCache"] = f"not run: {exc} (pip install --no-deps DeepCache)"
        return out, notes
    for n in (3, 5, 10):
        helper = DeepCacheSDHelper()

        def attach(p, n=n, helper=helper):
            helper.pipe = p
            helper.set_params(cache_interval=n, cache_branch_id=0, skip_mode="uniform")
            helper.enable()

        out.append(
            Setup(
                f"official DeepCache N={n} branch 0",
                "official DeepCache package",
                attach,
                lambda p, h=helper: h.disable(),
            )
        )
    return out, notes


def front_members(front: str, most: int | None) -> list[str]:
    """The searched schedules in ``front`` (cheapest first, as the search numbers them), at most ``most`` of
    them evenly spaced from the first to the last."""
    paths = sorted(glob.glob(os.path.join(front, "*.json")))
    if most is None or len(paths) <= most:
        return paths
    return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, most).round()]


def setups(
    pipe, call: dict, prompt: str, front: str | None, model: str, front_max: int | None = None
) -> tuple[list[Setup], dict[str, str]]:
    if not hasattr(pipe, "transformer"):
        return unet_setups()
    from diffusers.hooks import (
        FirstBlockCacheConfig,
        TaylorSeerCacheConfig,
        apply_first_block_cache,
        apply_taylorseer_cache,
    )

    out = reference_setups((16, 14, 12, 10, 8, 7, 6, 5))
    out += [fora(n, order, 0) for n in (2, 3, 4) for order in (0, 1, 2)]
    out += [fora(n, order, 2) for n in (2, 3, 4) for order in (1, 2)]
    for path in front_members(front, front_max) if front else []:
        name = f"searched {os.path.basename(path)[:-5]}"
        out.append(accel_setup(name, "accel searched (forecast per unit)", accel.BlockCacheConfig(schedule=path)))
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
    out += mag_cache_setups(pipe, call, prompt, (0.1, 0.2), "diffusers MagCache", notes)
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
            fresh = lambda: load_quiet(model)  # noqa: E731  (cache-dit patches the pipeline for good)
            out.append(
                Setup(name, family, attach, cache_dit.disable_cache, fresh_pipe=fresh, whole_pipeline_flops=True)
            )
    return out


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
        row[metric], row[f"{metric}_fold_std"] = mean_std(values, lone=float("nan"))
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
    cells = []
    for r in sorted(rows, key=lambda r: (r["family"], r["flop_speedup"])):
        ref = r.get("psnr_fewer_steps")
        cells.append(
            [
                r["setup"],
                r["family"],
                f"{r['flop_speedup']:.2f}x",
                f"{r['psnr']:.2f} ± {r['psnr_fold_std']:.2f}",
                "-" if ref is None else f"{ref:.2f} ({r['psnr'] - ref:+.2f})",
                f"{r['fid']:.3f} ± {r['fid_fold_std']:.3f}",
                f"{r['alignment']:.3f} ± {r['alignment_fold_std']:.3f}",
            ]
        )
    header = ["setup", "family", "FLOP speedup", "PSNR dB", "fewer steps at same FLOPs", "FID", "alignment"]
    lines = [
        f"`{meta['model']}`, {meta['steps']} steps, {meta['samples']} samples in {meta['folds']} seed folds "
        "(mean ± std across folds); FLOPs = denoiser FLOPs counted while it runs; PSNR to the uncached output.",
        "",
        *table(header, cells),
        "",
        *[f"- {k}: {v}" for k, v in notes.items()],
    ]
    write_results(out, {"meta": meta, "rows": rows, "notes": notes}, lines)
    plot(rows, out + ".png", meta["model"])


def plot(rows: list[dict], path: str, model: str) -> None:
    labels = {"psnr": "PSNR to uncached (dB)", "fid": "domain FID (lower is better)"}
    title = f"{model}: forecasting caches vs reuse, peers and fewer steps (error bars: fold std)"
    with speedup_figure(path, title, list(labels.values()), (12, 4.6), 120) as axes:
        for ax, metric in zip(axes, labels):
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


SAME_OUTPUT = {f"official DeepCache N={n} branch 0": f"DeepCache N={n} branch 0 order 0" for n in (3, 5, 10)}


def earlier_rows(path: str, meta: dict) -> dict[str, dict]:
    """Rows of an earlier run with the same workload, by setup name (empty when there is none)."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        earlier = json.load(f)
    if earlier["meta"] != meta:
        raise SystemExit(f"--merge: {path} is from another workload ({earlier['meta']}, not {meta})")
    return {row["setup"]: row for row in earlier["rows"] if row["family"] != "baseline"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default="pixart-shapes",
        choices=["pixart-shapes", "sd3-shapes", "wan-moving-shapes", "sd-digits"],
    )
    parser.add_argument("--samples", type=int, default=120)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--front", default=None, help="searched schedules (accel search-cache --out DIR: DIR/front)")
    parser.add_argument("--front-max", type=int, default=None, help="run at most this many front members")
    parser.add_argument("--batch", type=int, default=30)
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", nargs="+", default=None, help="keep only setups whose family contains one of these")
    parser.add_argument("--merge", action="store_true", help="keep an earlier run's rows; run only the missing setups")
    args = parser.parse_args()
    out = args.out or f"benchmarks/results/forecast_caching/{args.model}"
    meta = {"model": args.model, "steps": args.steps, "samples": args.samples, "folds": args.folds}
    kept = earlier_rows(out + ".json", meta) if args.merge else {}

    pipe, call, prompts, seeds, domain, real = workload(args.model, args.steps, args.samples, 90_000, 11)
    video = args.model.startswith("wan")
    all_setups, notes = setups(pipe, call, prompts[0], args.front, args.model, args.front_max)
    if args.only:
        keep = ("baseline", *args.only)
        all_setups = [s for s in all_setups if any(word in s.family for word in keep)]
    all_setups = [s for s in all_setups if s.name not in kept]
    if args.merge:
        with open(out + ".json") as f:
            notes = {**json.load(f)["notes"], **notes}
    rows, baseline, base_flops, outside = list(kept.values()), None, None, None
    same_output: dict[str, torch.Tensor] = {}
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
        notes.pop(setup.name, None)
        flops -= outside if setup.whole_pipeline_flops else 0
        if baseline is None:
            baseline, base_flops = images, flops
        if setup.name in SAME_OUTPUT or setup.name in SAME_OUTPUT.values():
            same_output[setup.name] = images
        row = {"setup": setup.name, "family": setup.family, "flop_speedup": base_flops / flops, "flops": flops}
        row.update(score(images, baseline, prompts, domain, real, args.folds, video))
        rows.append(row)
        tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        if row["family"] != "baseline":  # after every setup, so that --merge resumes an interrupted run
            fewer_steps_reference(rows)
            write(rows, notes, out, meta)
    for official, ours in SAME_OUTPUT.items():
        if official in same_output and ours in same_output:
            diff = float((same_output[official] - same_output[ours]).abs().max())
            notes[f"{official} vs accel {ours}"] = f"largest pixel difference {diff:.3g} over {len(prompts)} samples"
    fewer_steps_reference(rows)
    write(rows, notes, out, meta)
    print(f"wrote {out}.md / .json / .png")


if __name__ == "__main__":
    main()
