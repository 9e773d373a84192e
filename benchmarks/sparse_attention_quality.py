"""Block-sparse attention quality on the trained proving-ground video model (``wan-moving-shapes``).

Each setting generates the same prompts and seeds as dense attention in each of 3 disjoint seed
folds and reports the mean attention density it ran at, the share of denoiser FLOPs it saves,
fidelity to the dense videos (PSNR/SSIM), per-frame FID, video FID and prompt alignment, each with
its spread over folds and its **paired** difference to dense (per fold, then mean and spread). The
fair competitor is dense attention with fewer steps at the same denoiser FLOPs as the default
config, which is run too. Block size 16 at this model's 320 video tokens (5 latent frames x 8 x 8
patches), so a mask has 20 x 20 blocks.

The neighbourhood rows are Generalized Neighborhood Attention (Hassani et al., arXiv 2504.16922) in a
perfectly block-sparse setting: stride = tile = (1, 4, 4), block 16, kernels of odd multiples of the
stride or the whole axis, so the block mask is token-exact. Each sparse row gets a dense rival with
fewer steps at its own denoiser FLOPs (rounded to whole steps), plus 15 steps.

    python -m benchmarks.sparse_attention_quality --out benchmarks/results/sparse_attention_quality   # every row
    python -m benchmarks.sparse_attention_quality --settings gna-5x4x8 gna-3x4x8 \
        --out benchmarks/results/sparse_attention_quality_gna_cpu   # dense, those rows and their rivals
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from tqdm.auto import tqdm

import accel
from accel.metrics.cost import ModuleFlops
from accel.metrics.domain import DomainMetrics
from accel.metrics.fidelity import psnr, ssim
from accel.pipelines.builtin import BUILTIN_MODELS

from .common import batches, fold_items, load_quiet, mean_std, plus_minus, sample, table, write_results

MODEL = "wan-moving-shapes"
STEPS = 20
DEFAULT = "dynamic tau=0.9 (default)"
GNA = dict(pattern="neighborhood", stride=(1, 4, 4))
#: ``{key: (row name, SparseAttentionConfig fields or None for dense)}``, in the table's order
SETTINGS: dict[str, tuple[str, dict | None]] = {
    "dense": ("dense", None),
    "dynamic": (DEFAULT, dict(pattern="dynamic", tau=0.9)),
    "dynamic-0.7": ("dynamic tau=0.7", dict(pattern="dynamic", tau=0.7)),
    "dynamic-0.5": ("dynamic tau=0.5, max keep 0.3", dict(pattern="dynamic", tau=0.5, max_keep=0.3)),
    "window": ("static window (1, 4, 4)", dict(pattern="window", window=(1, 4, 4))),
    "gna-5x4x8": ("neighbourhood (5, 4, 8), stride (1, 4, 4)", dict(GNA, kernel_size=(5, 4, 8))),
    "gna-3x4x8": ("neighbourhood (3, 4, 8), stride (1, 4, 4)", dict(GNA, kernel_size=(3, 4, 8))),
}
METRICS = ("fid", "video_fid", "alignment")


@torch.no_grad()
def generate(pipe, prompts: list[str], seeds: list[int], steps: int, fields: dict | None) -> dict:
    """Videos of one fold, with the attention FLOPs the plugin skipped (per video) and seconds per video."""
    call = dict(BUILTIN_MODELS[MODEL].call_defaults, num_inference_steps=steps)
    if fields is not None:
        accel.apply(pipe, accel.SparseAttentionConfig(block_size=16, tile=(1, 4, 4), **fields))
    videos, density, skipped, seconds = [], [], 0.0, 0.0
    try:
        for chunk, chunk_seeds in batches(prompts, seeds, 24):
            start = time.perf_counter()
            videos.append(sample(pipe, chunk, chunk_seeds, call))
            seconds += time.perf_counter() - start
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
    prompts, seeds = fold_items(MODEL, 1, 90_000)
    with ModuleFlops(pipe.transformer) as counter, torch.no_grad():
        pipe(
            prompt=prompts,
            generator=torch.Generator().manual_seed(seeds[0]),
            output_type="pt",
            **dict(BUILTIN_MODELS[MODEL].call_defaults, num_inference_steps=steps),
        )
    return float(counter.total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-fold", type=int, default=48)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/sparse_attention_quality")
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(SETTINGS),
        default=list(SETTINGS),
        help="rows to run (dense always runs: the others are paired with it); default: all",
    )
    parser.add_argument(
        "--fewer-steps",
        nargs="*",
        type=int,
        default=None,
        help="dense step counts to run as rivals (default: each sparse row's FLOPs in whole steps, and 15)",
    )
    args = parser.parse_args()
    if args.fewer_steps is not None and any(not 1 <= s < STEPS for s in args.fewer_steps):
        parser.error(f"--fewer-steps must be step counts in [1, {STEPS - 1}], got {args.fewer_steps}")
    chosen = ["dense", *(k for k in SETTINGS if k in args.settings and k != "dense")]
    pipe = load_quiet(MODEL)
    domain = DomainMetrics(BUILTIN_MODELS[MODEL].dataset)
    real = domain.real_samples(480, seed=999)  # the sensitivity report's video reference
    dense_flops = dense_denoiser_flops(pipe, STEPS)
    # every setting, then up to two dense runs with fewer steps, one bar tick per fold
    rivals = len(args.fewer_steps) if args.fewer_steps is not None else len(chosen)
    progress = tqdm(total=(len(chosen) + rivals) * args.folds, desc="sparse attention quality", unit="fold")

    def measure(steps: int, fields: dict | None, dense_by_fold: dict[int, torch.Tensor]) -> dict:
        per = {k: [] for k in (*METRICS, "density", "flop_ratio", "seconds", "psnr", "ssim")}
        paired = {k: [] for k in METRICS}
        for fold in range(args.folds):
            prompts, seeds = fold_items(MODEL, args.per_fold, 90_000 + 10_000 * fold)
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
    for key in chosen:
        name, fields = SETTINGS[key]
        rows.append({"setting": name, **measure(STEPS, fields, dense_by_fold)})
        print(rows[-1], flush=True)
    if args.fewer_steps is not None:
        rival_steps = set(args.fewer_steps)
    else:  # dense sampling at each sparse row's cost, in whole steps
        rival_steps = {round(STEPS * r["flop_ratio"][0]) for r in rows[1:]} | {STEPS * 3 // 4}
    progress.total = (len(chosen) + len(rival_steps - {STEPS})) * args.folds
    for steps in sorted(rival_steps - {STEPS}, reverse=True):
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
    result = {
        "model": MODEL,
        "steps": STEPS,
        "folds": args.folds,
        "per_fold": args.per_fold,
        "device": f"{pipe.device}, {torch.get_num_threads()} torch threads",
        "dense_denoiser_flops_per_video": dense_flops,
        "rows": rows,
    }
    lines = markdown(rows, args)
    write_results(args.out, result, lines)
    print("\n".join(lines))


def markdown(rows: list[dict], args: argparse.Namespace) -> list[str]:
    header = ["setting", "mean density", "denoiser FLOPs", "s/video", "PSNR to dense (dB)", "SSIM", "FID"]
    header += ["FID, paired", "video FID", "video FID, paired", "alignment", "alignment, paired", "moves"]
    cells = [
        [
            r["setting"],
            f"{r['density'][0]:.2f}",
            f"{r['flop_ratio'][0]:.3f}",
            f"{r['seconds'][0]:.2f}",
            plus_minus(r.get("psnr")),
            plus_minus(r.get("ssim")),
            *(cell for k in METRICS for cell in (plus_minus(r[k]), plus_minus(r.get(f"{k}_paired"), signed=True))),
            ", ".join(r.get("beyond_spread", [])) or "-",
        ]
        for r in rows
    ]
    return [
        f"Block-sparse attention on `{MODEL}` ({args.folds} seed folds x {args.per_fold} videos, guidance 2, "
        "block 16; dense warm-up 20% of steps and layer 0 dense, the defaults). FID and video FID against 480 real "
        "clips; paired = per-fold difference to dense; 'moves' = paired difference beyond twice its spread.",
        "",
        *table(header, cells),
    ]


if __name__ == "__main__":
    main()
