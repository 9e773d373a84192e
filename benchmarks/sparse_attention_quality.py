"""Block-sparse attention quality on the trained proving-ground video model (``wan-moving-shapes``).

Each setting generates the same prompts and seeds as dense attention in each of 3 disjoint seed
folds and reports the mean attention density it ran at, the share of denoiser FLOPs it saves,
fidelity to the dense videos (PSNR/SSIM), per-frame FID, video FID and prompt alignment, each with
its spread over folds and its **paired** difference to dense (per fold, then mean and spread). The
fair competitor is dense attention with fewer steps at the same denoiser FLOPs as the default
config, which is run too. Block size 16 at this model's 320 video tokens (5 latent frames x 8 x 8
patches), so a mask has 20 x 20 blocks.

    python benchmarks/sparse_attention_quality.py --out benchmarks/results/sparse_attention_quality
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from tqdm.auto import tqdm

import accel
from accel.evaluation.prompts import builtin_prompts
from accel.metrics.cost import ModuleFlops
from accel.metrics.domain import DomainMetrics
from accel.metrics.fidelity import psnr, ssim
from accel.pipelines import load
from accel.pipelines.builtin import BUILTIN_MODELS

MODEL = "wan-moving-shapes"
STEPS = 20
DEFAULT = "dynamic tau=0.9 (default)"
SETTINGS = {
    "dense": None,
    DEFAULT: dict(pattern="dynamic", tau=0.9),
    "dynamic tau=0.7": dict(pattern="dynamic", tau=0.7),
    "dynamic tau=0.5, max keep 0.3": dict(pattern="dynamic", tau=0.5, max_keep=0.3),
    "static window (1, 4, 4)": dict(pattern="window", window=(1, 4, 4)),
}
METRICS = ("fid", "video_fid", "alignment")


def fold_items(fold: int, n: int) -> tuple[list[str], list[int]]:
    base = builtin_prompts(MODEL)
    return [base[i % len(base)] for i in range(n)], [90_000 + 10_000 * fold + i for i in range(n)]


@torch.no_grad()
def generate(pipe, prompts: list[str], seeds: list[int], steps: int, fields: dict | None) -> dict:
    """Videos of one fold, with the attention FLOPs the plugin skipped (per video) and seconds per video."""
    call = dict(BUILTIN_MODELS[MODEL].call_defaults, num_inference_steps=steps, output_type="pt")
    if fields is not None:
        accel.apply(pipe, accel.SparseAttentionConfig(block_size=16, tile=(1, 4, 4), **fields))
    videos, density, skipped, seconds = [], [], 0.0, 0.0
    try:
        for i in range(0, len(prompts), 24):
            start = time.perf_counter()
            out = pipe(
                prompt=prompts[i : i + 24],
                generator=[torch.Generator().manual_seed(s) for s in seeds[i : i + 24]],
                **call,
            )
            seconds += time.perf_counter() - start
            videos.append(out.frames.float().clamp(0, 1))
            if fields is not None:
                stats = next(iter(accel.summary(pipe)["denoisers"].values()))["plugins"]["sparse_attention"]
                density.append(stats["mean_density"])
                skipped += stats["attention_flops_dense"] - stats["attention_flops_computed"]
    finally:
        if fields is not None:
            accel.remove(pipe)
    return {
        "videos": torch.cat(videos),
        "density": statistics.fmean(density) if density else 1.0,
        "skipped_flops": skipped / len(prompts),
        "seconds": seconds / len(prompts),
    }


def dense_denoiser_flops(pipe, steps: int) -> float:
    """Denoiser FLOPs of one dense video (both guidance branches), counted by torch's FlopCounterMode."""
    prompts, seeds = fold_items(0, 1)
    with ModuleFlops(pipe.transformer) as counter, torch.no_grad():
        pipe(
            prompt=prompts,
            generator=torch.Generator().manual_seed(seeds[0]),
            output_type="pt",
            **dict(BUILTIN_MODELS[MODEL].call_defaults, num_inference_steps=steps),
        )
    return float(counter.total)


def mean_std(values: list[float]) -> list[float]:
    return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-fold", type=int, default=48)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/sparse_attention_quality")
    args = parser.parse_args()
    pipe = load(MODEL)
    pipe.set_progress_bar_config(disable=True)
    domain = DomainMetrics(BUILTIN_MODELS[MODEL].dataset)
    real = domain.real_samples(480, seed=999)  # the sensitivity report's video reference
    dense_flops = dense_denoiser_flops(pipe, STEPS)
    # every setting, then up to two dense runs with fewer steps, one bar tick per fold
    progress = tqdm(total=(len(SETTINGS) + 2) * args.folds, desc="sparse attention quality", unit="fold")

    def measure(steps: int, fields: dict | None, dense_by_fold: dict[int, torch.Tensor]) -> dict:
        per = {k: [] for k in (*METRICS, "density", "flop_ratio", "seconds", "psnr", "ssim")}
        paired = {k: [] for k in METRICS}
        for fold in range(args.folds):
            prompts, seeds = fold_items(fold, args.per_fold)
            result = generate(pipe, prompts, seeds, steps, fields)
            videos = result["videos"]
            values = {
                "fid": domain.fid(real, videos),
                "video_fid": domain.video_fid(real, videos),
                "alignment": float(domain.alignment(videos, prompts).mean()),
            }
            for k, v in values.items():
                per[k].append(v)
            per["density"].append(result["density"])
            per["flop_ratio"].append((dense_flops * steps / STEPS - result["skipped_flops"]) / dense_flops)
            per["seconds"].append(result["seconds"])
            progress.update()
            if fold not in dense_by_fold:
                dense_by_fold[fold] = videos
                dense_by_fold[(fold, "values")] = values
                continue
            reference = dense_by_fold[fold]
            per["psnr"].append(float(psnr(videos.flatten(0, 1), reference.flatten(0, 1)).clamp(max=100).mean()))
            per["ssim"].append(float(ssim(videos.flatten(0, 1), reference.flatten(0, 1)).mean()))
            for k in METRICS:
                paired[k].append(values[k] - dense_by_fold[(fold, "values")][k])
        row = {k: mean_std(v) for k, v in per.items() if v}
        row.update({f"{k}_paired": mean_std(v) for k, v in paired.items() if v})
        return row

    dense_by_fold: dict = {}
    rows = []
    for name, fields in SETTINGS.items():
        rows.append({"setting": name, **measure(STEPS, fields, dense_by_fold)})
        print(rows[-1], flush=True)
    same_cost = round(STEPS * rows[1]["flop_ratio"][0])
    for steps in sorted({same_cost, STEPS * 3 // 4} - {STEPS}, reverse=True):
        rows.append({"setting": f"dense, {steps} steps", **measure(steps, None, dense_by_fold)})
        print(rows[-1], flush=True)
    progress.close()
    for row in rows[1:]:
        row["beyond_spread"] = [
            k
            for k in METRICS
            if abs(row[f"{k}_paired"][0]) > 2 * max(row[f"{k}_paired"][1], 1e-9)
            and not (k == "alignment" and abs(row[f"{k}_paired"][0]) < 1e-3)
        ]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(
            {
                "model": MODEL,
                "steps": STEPS,
                "folds": args.folds,
                "per_fold": args.per_fold,
                "dense_denoiser_flops_per_video": dense_flops,
                "rows": rows,
            },
            f,
            indent=2,
        )
    write_markdown(rows, args, args.out + ".md")


def write_markdown(rows: list[dict], args, path: str) -> None:
    ms = lambda v, p=3: f"{v[0]:.{p}g} ± {v[1]:.2g}"  # noqa: E731
    diff = lambda v: f"{v[0]:+.3g} ± {v[1]:.2g}"  # noqa: E731
    lines = [
        f"Block-sparse attention on `{MODEL}` ({args.folds} seed folds x {args.per_fold} videos, guidance 2, "
        "block 16; dense warm-up 20% of steps and layer 0 dense, the defaults). FID and video FID against 480 real "
        "clips; paired = per-fold difference to dense; 'moves' = paired difference beyond twice its spread.",
        "",
        "| setting | mean density | denoiser FLOPs | s/video | PSNR to dense (dB) | SSIM | FID | FID, paired | "
        "video FID | video FID, paired | alignment | alignment, paired | moves |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        get = lambda k, f, r=r: f(r[k]) if k in r else "-"  # noqa: E731
        lines.append(
            f"| {r['setting']} | {r['density'][0]:.2f} | {r['flop_ratio'][0]:.3f} | {r['seconds'][0]:.2f} | "
            f"{get('psnr', ms)} | {get('ssim', ms)} | {ms(r['fid'])} | {get('fid_paired', diff)} | "
            f"{ms(r['video_fid'])} | {get('video_fid_paired', diff)} | {ms(r['alignment'])} | "
            f"{get('alignment_paired', diff)} | {', '.join(r.get('beyond_spread', [])) or '-'} |"
        )
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
