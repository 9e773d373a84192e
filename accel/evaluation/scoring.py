"""Scoring phase of ``accel eval``: one summary row per grid entry, from the run folder alone.

Per entry: wall-clock and denoiser-only speedup over the baseline (median of per-sample paired
ratios, with the 10th-90th percentile spread), the FLOP ratio beside them, NFEs, plugin cache
bytes, fidelity to the baseline sample of the same prompt and seed (PSNR, SSIM, optional LPIPS),
and, for the built-in models, domain FID (all samples; spread over 3 seed folds), alignment and
(for video) temporal consistency. ``beats_fewer_steps`` lists the metrics on which the entry lies
above the fewer-steps curve at its own speedup.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from typing import Any

import numpy as np
import torch

from .records import read_records
from .runner import BASELINE, load_sample
from .spec import SweepSpec

#: Metrics measured against the baseline itself (undefined for the baseline row).
FIDELITY = ("psnr", "ssim", "lpips")

#: Quality columns, and whether higher is better.
QUALITY = {"psnr": True, "ssim": True, "lpips": False, "fid": False, "alignment": True, "clip_score": True,
           "temporal_consistency": True, "image_reward": True}


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def _ratio_stats(base: dict[str, float], other: dict[str, float]) -> tuple[float, float, float]:
    ratios = sorted(base[k] / other[k] for k in other if k in base and other[k] > 0)
    if not ratios:
        return float("nan"), float("nan"), float("nan")
    q = lambda p: ratios[min(len(ratios) - 1, max(0, round(p * (len(ratios) - 1))))]  # noqa: E731
    return statistics.median(ratios), q(0.1), q(0.9)


def _sample_id(record: dict[str, Any]) -> str:
    return f"p{record['prompt_id']}_s{record['seed']}"


def score_run(run_dir: str, spec: SweepSpec) -> list[dict[str, Any]]:
    """Compute, write (``summary.csv``, ``summary.json``) and return the summary rows."""
    records = list(read_records(run_dir).values())
    by_entry: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_entry.setdefault(record["config"], []).append(record)
    if BASELINE not in by_entry:
        raise ValueError(f"{run_dir} has no baseline samples yet; run the generation first")
    with open(os.path.join(run_dir, "config.json")) as f:
        entry_meta = {e["name"]: e for e in json.load(f)["entries"]}
    flops_path = os.path.join(run_dir, "flops.json")
    flops = json.load(open(flops_path)) if os.path.exists(flops_path) else {}

    def load_all(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {_sample_id(r): load_sample(os.path.join(run_dir, r["path"]), r.get("frames", 1)) for r in rows}

    base_rows = by_entry[BASELINE]
    base_samples = load_all(base_rows)
    base_latency = {_sample_id(r): r["latency_s"] for r in base_rows}
    base_denoiser = {_sample_id(r): r["denoiser_s"] for r in base_rows}
    metrics = spec.metric_names()
    domain = real = None
    if "domain" in metrics and spec.builtin:
        from ..metrics.domain import DomainMetrics
        from ..pipelines.builtin import BUILTIN_MODELS

        domain = DomainMetrics(BUILTIN_MODELS[spec.model].dataset)
        real = domain.real_samples()
    clip = None
    if "clip" in metrics:
        from ..metrics.clip import DEFAULT_CLIP, ClipScorer

        clip = ClipScorer(spec.clip_model or DEFAULT_CLIP)
    lpips = None
    if "lpips" in metrics:
        from ..metrics.fidelity import LPIPS

        lpips = LPIPS()

    rows = []
    for name, entry_records in by_entry.items():
        samples = load_all(entry_records)
        ids = [i for i in samples if i in base_samples]
        prompts = {_sample_id(r): r["prompt"] for r in entry_records}
        latency = {_sample_id(r): r["latency_s"] for r in entry_records}
        denoiser = {_sample_id(r): r["denoiser_s"] for r in entry_records}
        speedup, speedup_p10, speedup_p90 = _ratio_stats(base_latency, latency)
        dn_speedup, _, _ = _ratio_stats(base_denoiser, denoiser)
        meta = entry_meta.get(name, {})
        row: dict[str, Any] = {
            "config": name, "kind": meta.get("kind", "method"), "steps": meta.get("steps"), "samples": len(samples),
            "latency_s": statistics.median(latency.values()), "speedup": speedup, "speedup_p10": speedup_p10,
            "speedup_p90": speedup_p90, "denoiser_speedup": dn_speedup,
            "flop_ratio": (flops[BASELINE] / flops[name]) if flops.get(name) and flops.get(BASELINE) else float("nan"),
            "nfe": _mean_std([r.get("nfe") or float("nan") for r in entry_records])[0],
            "cache_bytes": max((_cache_bytes(r) for r in entry_records), default=0),
        }
        if "fidelity" in metrics and name != BASELINE:
            stack = torch.stack([samples[i] for i in ids])
            ref = torch.stack([base_samples[i] for i in ids])
            from ..metrics.fidelity import psnr, ssim

            row["psnr"], row["psnr_std"] = _mean_std(psnr(stack, ref).clamp(max=100).tolist())
            row["ssim"], row["ssim_std"] = _mean_std(ssim(stack, ref).tolist())
            if lpips is not None and name != BASELINE:
                row["lpips"], row["lpips_std"] = _mean_std(lpips(stack, ref).tolist())
        ordered = sorted(samples)
        tensor = torch.stack([samples[i] for i in ordered])
        prompt_list = [prompts[i] for i in ordered]
        if domain is not None:
            row["fid"] = domain.fid(real, tensor)
            row["fid_std"] = _fold_std(domain, real, tensor, ordered)
            row["alignment"], row["alignment_std"] = _mean_std(domain.alignment(tensor, prompt_list).tolist())
            if tensor.ndim == 5:
                row["temporal_consistency"], _ = _mean_std(domain.temporal_consistency(tensor).tolist())
        if clip is not None:
            frames = tensor[:, tensor.shape[1] // 2] if tensor.ndim == 5 else tensor
            row["clip_score"], row["clip_score_std"] = _mean_std(clip(frames, prompt_list).tolist())
        rows.append(row)

    _mark_fewer_steps(rows)
    rows.sort(key=lambda r: ({"baseline": 0, "fewer_steps": 1, "method": 2}.get(r["kind"], 3), -(r["speedup"] or 0)))
    write_summary(run_dir, rows)
    return rows


def _cache_bytes(record: dict[str, Any]) -> int:
    total = 0
    for plugins in (record.get("plugin_stats") or {}).values():
        for stats in plugins.values():
            total += int(stats.get("cache_bytes") or stats.get("peak_cache_bytes") or 0)
    return total


def _fold_std(domain, real: torch.Tensor, tensor: torch.Tensor, ids: list[str]) -> float:
    """Std of FID over 3 disjoint folds of samples (by seed), NaN with fewer than 3 samples per fold."""
    seeds = sorted({i.split("_s")[1] for i in ids})
    if len(seeds) < 3 or len(ids) < 30:
        return float("nan")
    folds = [[k for k, i in enumerate(ids) if seeds.index(i.split("_s")[1]) % 3 == f] for f in range(3)]
    values = [domain.fid(real, tensor[fold]) for fold in folds if fold]
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    order = np.argsort(xs)
    return float(np.interp(math.log(x), np.log(np.asarray(xs)[order]), np.asarray(ys)[order]))


def _mark_fewer_steps(rows: list[dict[str, Any]]) -> None:
    """Which quality metrics put each method above the fewer-steps curve (baseline included) at its speedup."""
    curve = [r for r in rows if r["kind"] in ("baseline", "fewer_steps") and math.isfinite(r["speedup"])]
    for row in rows:
        if row["kind"] != "method":
            continue
        beats = []
        for metric, higher in QUALITY.items():
            points = [(r["speedup"], r.get(metric)) for r in curve if r.get(metric) is not None and math.isfinite(r[metric])
                      and not (r["kind"] == "baseline" and metric in FIDELITY)]
            value = row.get(metric)
            if len(points) < 2 or value is None or not math.isfinite(value) or not math.isfinite(row["speedup"]):
                continue
            reference = _interp([p[0] for p in points], [p[1] for p in points], row["speedup"])
            if (value > reference) if higher else (value < reference):
                beats.append(metric)
        row["beats_fewer_steps"] = ",".join(beats)


COLUMNS = ["config", "kind", "steps", "samples", "speedup", "speedup_p10", "speedup_p90", "denoiser_speedup",
           "flop_ratio", "nfe", "latency_s", "psnr", "psnr_std", "ssim", "ssim_std", "lpips", "lpips_std", "fid",
           "fid_std", "alignment", "alignment_std", "temporal_consistency", "clip_score", "clip_score_std",
           "cache_bytes", "beats_fewer_steps"]


def write_summary(run_dir: str, rows: list[dict[str, Any]]) -> None:
    present = [c for c in COLUMNS if any(c in r for r in rows)]
    with open(os.path.join(run_dir, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=present, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in present})
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(rows, f, indent=2, default=str)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return value


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of the main columns (for the terminal)."""
    cols = [c for c in ("config", "speedup", "flop_ratio", "nfe", "psnr", "ssim", "fid", "alignment",
                        "temporal_consistency", "clip_score", "beats_fewer_steps") if any(c in r for r in rows)]
    header = {c: c.replace("temporal_consistency", "temporal") for c in cols}
    table = [[header[c] for c in cols]] + [[str(_fmt(r.get(c, ""))) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in table)
