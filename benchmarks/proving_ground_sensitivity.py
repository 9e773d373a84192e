"""Sensitivity report of the proving-ground metrics (issue: the proving ground).

For each built-in diffusion model: the metric floor (real vs real), the baseline sample quality, the
spread across seeds (3 disjoint seed folds), and how far simple degradations move each metric:
fewer steps, reusing the previous step's model output every k steps, dropping guidance halfway,
no guidance, stronger guidance. A metric that cannot tell these apart beyond the seed spread is not
good enough.

Every setting runs on the same prompts and seeds as the baseline in each fold (common random
numbers), so besides each metric's spread across folds the report gives the **paired** difference
to the baseline (per fold, then mean and spread over folds): seed-to-seed variation cancels in it,
which is how two samplers should be compared. Both criteria are reported; neither replaces the other.

    python -m benchmarks.proving_ground_sensitivity --out benchmarks/results/sensitivity

Writes ``<out>/<model>.json``, ``<out>/sensitivity.md`` and sample grids ``<out>/<model>_samples.png``.
Finished models are not rerun; a killed run resumes after the last finished setting
(``<out>/<model>.partial.json``, the baseline samples are regenerated to compare against).
"""

from __future__ import annotations

import functools
import json
import os
import time

import torch

import accel
from accel.metrics.domain import DomainMetrics
from accel.metrics.fidelity import psnr
from accel.pipelines.builtin import BUILTIN_MODELS, data

from .common import (
    batches,
    denoiser,
    fold_items,
    folds_parser,
    load_quiet,
    mean_std,
    per_model,
    plus_minus,
    sample,
    table,
)

SAMPLES_PER_FOLD = {"sd-digits": 100, "pixart-shapes": 480, "sd3-shapes": 120, "wan-moving-shapes": 96}
#: Size of the fixed real reference set of the FID (procedural sets; digits use every image not in a floor set).
REFERENCE_SIZE = {"shapes": 1000, "varied_shapes": 1000, "moving_shapes": 480}


class ReuseOutput:
    """Every ``k``-th step runs the denoiser; the steps in between reuse its last output (whole model).

    Counts denoiser calls itself (one per step, two for the two-call CFG of Wan); ``reset()`` before
    every pipeline call.
    """

    def __init__(self, pipe, k: int) -> None:
        self.k = k
        self.denoiser = denoiser(pipe)
        self.calls_per_step = 2 if type(pipe).__name__ == "WanPipeline" else 1
        self.original = self.denoiser.forward
        self.denoiser.forward = self.forward
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.cache = {}

    def forward(self, *args, **kwargs):
        step, branch = divmod(self.calls, self.calls_per_step)
        self.calls += 1
        if step % self.k and branch in self.cache:
            return self.cache[branch]
        self.cache[branch] = self.original(*args, **kwargs)
        return self.cache[branch]

    def close(self) -> None:
        del self.denoiser.forward


def settings(steps: int, guidance: float) -> list[dict]:
    return [
        {"name": "baseline", "steps": steps, "guidance": guidance},
        {"name": f"{steps // 2} steps", "steps": steps // 2, "guidance": guidance},
        {"name": f"{steps // 4} steps", "steps": steps // 4, "guidance": guidance},
        {"name": "reuse output every 2nd step", "steps": steps, "guidance": guidance, "reuse": 2},
        {"name": "reuse output every 4th step", "steps": steps, "guidance": guidance, "reuse": 4},
        {
            "name": "guidance off for last 50%",
            "steps": steps,
            "guidance": guidance,
            "configs": [accel.AdaptiveGuidanceConfig(threshold=2.0, max_step=steps // 2)],
        },
        {"name": "no guidance", "steps": steps, "guidance": 1.0},
        {"name": f"guidance {2 * guidance:g}", "steps": steps, "guidance": 2 * guidance},
    ]


@torch.no_grad()
def generate(pipe, model: str, prompts: list[str], seeds: list[int], setting: dict, batch: int = 24) -> torch.Tensor:
    call = dict(BUILTIN_MODELS[model].call_defaults)
    call.update(num_inference_steps=setting["steps"], guidance_scale=setting["guidance"])
    reuse = ReuseOutput(pipe, setting["reuse"]) if setting.get("reuse") else None
    if setting.get("configs"):
        accel.apply(pipe, *setting["configs"])
    out = []
    try:
        for chunk, chunk_seeds in batches(prompts, seeds, batch):
            if reuse is not None:
                reuse.reset()
            out.append(sample(pipe, chunk, chunk_seeds, call))
    finally:
        if reuse is not None:
            reuse.close()
        accel.remove(pipe)
    return torch.cat(out)


def save_sample_grid(samples: torch.Tensor, path: str) -> None:
    """32 images, 8 per row; or 6 videos, one per row, every frame left to right."""
    from PIL import Image

    ncol = 8 if samples.ndim == 4 else samples.shape[1]
    grid = samples[:32] if samples.ndim == 4 else samples[:6].flatten(0, 1)
    Image.fromarray(data.grid(grid * 2 - 1, nrow=ncol)).resize(
        (ncol * 34 * 3, ((len(grid) + ncol - 1) // ncol) * 34 * 3), Image.NEAREST
    ).save(path)


def real_sets(domain: DomainMetrics, model: str, n: int, count: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The FID reference and ``count`` disjoint real sets of ``n`` samples for the real-vs-real floor.

    Digits (1797 images in all): the floor sets first, every other image is the reference. The
    procedural sets draw a larger reference (``REFERENCE_SIZE``) from seeds the floor sets do not use.
    """
    dataset = BUILTIN_MODELS[model].dataset
    if dataset == "digits":
        images = torch.cat([data.digits("heldout")[0], data.digits("train")[0]])
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        floors = [data.to_unit(images[order[i * n : (i + 1) * n]]) for i in range(count)]
        return data.to_unit(images[order[count * n :]]), floors
    return (
        domain.real_samples(REFERENCE_SIZE[dataset], seed=999),
        [domain.real_samples(n, seed=1000 + i) for i in range(count)],
    )


def run_model(model: str, folds: int, steps: int, guidance: float, out: str) -> dict:
    pipe = load_quiet(model)
    domain = DomainMetrics(BUILTIN_MODELS[model].dataset)
    n = SAMPLES_PER_FOLD[model]
    reference, floor_sets = real_sets(domain, model, n, folds)
    is_video = reference.ndim == 5
    floor = [domain.fid(reference, r) for r in floor_sets]
    result = {
        "model": model,
        "samples_per_fold": n,
        "folds": folds,
        "steps": steps,
        "guidance": guidance,
        "reference_size": len(reference),
        "fid_floor": mean_std(floor),
        "rows": [],
    }
    if is_video:
        result["video_fid_floor"] = mean_std([domain.video_fid(reference, r) for r in floor_sets])
    partial_path = os.path.join(out, f"{model}.partial.json")
    done = _finished_rows(partial_path, result)
    todo = [s for s in settings(steps, guidance) if s["name"] not in done]
    if todo and todo[0]["name"] != "baseline":
        todo.insert(0, settings(steps, guidance)[0])  # later rows are measured against the baseline samples
    baseline_by_fold, baseline_scores = {}, {}
    for setting in todo:
        fids, aligns, video_fids, psnrs, temporal, seconds = [], [], [], [], [], 0.0
        for fold in range(folds):
            prompts, seeds = fold_items(model, n, 100_000 * (fold + 1))
            start = time.perf_counter()
            samples = generate(pipe, model, prompts, seeds, setting)
            seconds += time.perf_counter() - start
            if setting["name"] == "baseline":
                baseline_by_fold[fold] = samples
                if fold == 0:
                    save_sample_grid(samples, os.path.join(out, f"{model}_samples.png"))
            fids.append(domain.fid(reference, samples))
            aligns.append(float(domain.alignment(samples, prompts).mean()))
            if is_video:
                video_fids.append(domain.video_fid(reference, samples))
            if setting["name"] == "baseline":
                baseline_scores[fold] = (fids[-1], aligns[-1], video_fids[-1] if is_video else None)
            else:
                psnrs.append(float(psnr(samples, baseline_by_fold[fold]).clamp(max=100).mean()))
            if samples.ndim == 5:
                temporal.append(float(domain.temporal_consistency(samples).mean()))
        row = {
            "setting": setting["name"],
            "fid": mean_std(fids),
            "alignment": mean_std(aligns),
            "fid_paired_difference": mean_std([f - baseline_scores[k][0] for k, f in enumerate(fids)]),
            "alignment_paired_difference": mean_std([a - baseline_scores[k][1] for k, a in enumerate(aligns)]),
            "video_fid": mean_std(video_fids) if is_video else None,
            "video_fid_paired_difference": mean_std([v - baseline_scores[k][2] for k, v in enumerate(video_fids)])
            if is_video
            else None,
            "psnr_to_baseline": mean_std(psnrs) if psnrs else None,
            "temporal_consistency": mean_std(temporal) if temporal else None,
            "seconds_per_sample": seconds / (folds * n),
        }
        done[setting["name"]] = row
        print(model, row, flush=True)
        _write_json({**result, "rows": list(done.values())}, partial_path)
    names = [s["name"] for s in settings(steps, guidance)]
    result["rows"] = [done[name] for name in names]
    result["real_alignment"] = _real_alignment(domain, model, n)
    _write_json(result, os.path.join(out, f"{model}.json"))
    os.remove(partial_path)
    return result


def _finished_rows(partial_path: str, result: dict) -> dict[str, dict]:
    """Rows a killed run already measured with the same settings (the run resumes after them)."""
    if not os.path.exists(partial_path):
        return {}
    with open(partial_path) as f:
        partial = json.load(f)
    same = all(
        partial.get(k) == result[k] for k in ("samples_per_fold", "folds", "steps", "guidance", "reference_size")
    )
    if not same:
        raise SystemExit(f"{partial_path} was written with other settings; move it away to start this model afresh")
    return {row["setting"]: row for row in partial["rows"]}


def _write_json(obj: dict, path: str) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(path + ".tmp", path)


def _real_alignment(domain: DomainMetrics, model: str, n: int) -> float:
    dataset = BUILTIN_MODELS[model].dataset
    if dataset == "digits":
        images, labels = data.digits("heldout")
        captions = [data.digit_caption(int(label)) for label in labels]
        return float(domain.alignment(data.to_unit(images), captions).mean())
    if dataset in data.SHAPE_SETS:
        images, _, captions = data.SHAPE_SETS[dataset](n, 7, "heldout")
        return float(domain.alignment(data.to_unit(images), captions).mean())
    videos, _, captions = data.moving_shapes(n, 7, "heldout")
    return float(domain.alignment(data.to_unit(videos), captions).mean())


#: Shifts smaller than this are no signal, however consistent (alignment is a probability: a shift of
#: 1e-6 on a saturated classifier is rounding, not a difference the report can show).
MIN_SHIFT = {"fid": 0.0, "alignment": 1e-3, "video_fid": 0.0}


def moves(row: dict, baseline: dict, metric: str) -> tuple[bool, bool]:
    """Whether ``metric`` tells ``row`` from the baseline: (unpaired, paired).

    Unpaired: the means differ by more than twice the larger of the two spreads across folds.
    Paired: the per-fold difference to the baseline is more than twice its own spread from zero.
    """
    (mean, std), (base_mean, base_std) = row[metric], baseline[metric]
    diff_mean, diff_std = row[f"{metric}_paired_difference"]
    if abs(diff_mean) <= MIN_SHIFT[metric]:
        return False, False
    return abs(mean - base_mean) > 2 * max(std, base_std), abs(diff_mean) > 2 * diff_std


def verdict(row: dict, baseline: dict) -> str:
    names = {"fid": "FID", "alignment": "align", "video_fid": "video FID"}
    names = {m: name for m, name in names.items() if row.get(m) is not None}
    unpaired = [names[m] for m in names if moves(row, baseline, m)[0]]
    paired = [names[m] for m in names if moves(row, baseline, m)[1]]
    return f"{', '.join(unpaired) or 'none'} / {', '.join(paired) or 'none'}"


METRIC_NAMES = {"fid": "FID", "alignment": "alignment", "video_fid": "video FID"}


def write_markdown(results: list[dict], path: str, images: str = "../benchmarks/results/sensitivity/") -> None:
    """The report, ready to paste into docs/ (``images``: the sample grids' path as seen from there)."""
    lines = ["# Proving-ground sensitivity (generated by benchmarks/proving_ground_sensitivity.py)", ""]
    for r in results:
        base = r["rows"][0]
        video = base.get("video_fid") is not None
        metrics = ["fid", "alignment", "video_fid"] if video else ["fid", "alignment"]
        floors = (
            f"floor (FID of {r['samples_per_fold']} other real samples, {r['folds']} sets): "
            f"{plus_minus(r['fid_floor'])}"
        )
        if video:
            floors += f"; video FID floor: {plus_minus(r['video_fid_floor'])}"
        header = ["setting"]
        for m in metrics:
            header += [METRIC_NAMES[m], f"{METRIC_NAMES[m]}, paired difference"]
        header += ["PSNR to baseline (dB)", "temporal consistency", "s/sample"]
        header.append("moves beyond the spread (unpaired / paired)")
        cells = []
        for row in r["rows"]:
            is_base = row is base
            cells.append(
                [
                    row["setting"],
                    *(
                        cell
                        for m in metrics
                        for cell in (
                            plus_minus(row[m]),
                            "-" if is_base else plus_minus(row[f"{m}_paired_difference"], signed=True),
                        )
                    ),
                    plus_minus(row["psnr_to_baseline"]),
                    plus_minus(row["temporal_consistency"]),
                    f"{row['seconds_per_sample']:.3f}",
                    "-" if is_base else verdict(row, base),
                ]
            )
        lines += [
            f"### {r['model']}",
            "",
            f"![{r['model']} samples]({images}{r['model']}_samples.png)",
            "",
            f"{r['samples_per_fold']} samples per fold, {r['folds']} seed folds, {r['steps']} steps, guidance "
            f"{r['guidance']:g}. "
            f"FID reference: {r['reference_size']} real samples; {floors}; alignment of real data: "
            f"{r['real_alignment']:.3f}.",
            "",
            *table(header, cells),
            "",
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    parser = folds_parser(__doc__.split("\n\n")[0], SAMPLES_PER_FOLD, "benchmarks/results/sensitivity")
    args = parser.parse_args()
    run = functools.partial(run_model, folds=args.folds, steps=args.steps, guidance=args.guidance, out=args.out)
    write_markdown(per_model(args, SAMPLES_PER_FOLD, run), os.path.join(args.out, "sensitivity.md"))


if __name__ == "__main__":
    main()
