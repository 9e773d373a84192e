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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .records import read_records
from .runner import BASELINE, load_sample
from .spec import SweepSpec

#: Metrics measured against the baseline itself (undefined for the baseline row).
FIDELITY = ("psnr", "ssim", "lpips")

#: Quality columns, and whether higher is better.
QUALITY = {
    "psnr": True,
    "ssim": True,
    "lpips": False,
    "fid": False,
    "alignment": True,
    "clip_score": True,
    "temporal_consistency": True,
    "image_reward": True,
}


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


@dataclass
class _Baseline:
    """The baseline entry's samples and per-sample timings, keyed by sample id."""

    samples: dict[str, torch.Tensor]
    latency: dict[str, float]
    denoiser: dict[str, float]


@dataclass
class _Scorers:
    """The metric names of the sweep and the scorers they need (None: not computed)."""

    metrics: list[str]
    domain: Any = None
    real: torch.Tensor | None = None
    clip: Any = None
    lpips: Any = None


def score_run(run_dir: str, spec: SweepSpec) -> list[dict[str, Any]]:
    """Compute, write (``summary.csv``, ``summary.json``) and return the summary rows."""
    by_entry = _records_by_entry(run_dir)
    entry_meta = _entry_meta(run_dir)
    flops = _load_flops(run_dir)
    baseline = _load_baseline(run_dir, by_entry[BASELINE])
    scorers = _make_scorers(spec)
    rows = [
        _score_entry(run_dir, name, entry_records, entry_meta.get(name, {}), flops, baseline, scorers)
        for name, entry_records in by_entry.items()
    ]
    _mark_fewer_steps(rows)
    rows.sort(key=_row_order)
    write_summary(run_dir, rows)
    return rows


def _records_by_entry(run_dir: str) -> dict[str, list[dict[str, Any]]]:
    """The run's records grouped by grid entry; raises ValueError when there is no baseline yet."""
    by_entry: dict[str, list[dict[str, Any]]] = {}
    for record in read_records(run_dir).values():
        by_entry.setdefault(record["config"], []).append(record)
    if BASELINE not in by_entry:
        raise ConfigError(f"{run_dir} has no baseline samples yet; run the generation first")
    return by_entry


def _entry_meta(run_dir: str) -> dict[str, dict[str, Any]]:
    """``{entry name: entry}`` from the run's ``config.json``."""
    with open(os.path.join(run_dir, "config.json")) as f:
        return {e["name"]: e for e in json.load(f)["entries"]}


def _load_flops(run_dir: str) -> dict[str, Any]:
    """FLOPs per entry from the run's ``flops.json``, or ``{}`` without one."""
    path = os.path.join(run_dir, "flops.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _load_samples(run_dir: str, records: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The sample tensors of ``records``, keyed by sample id."""
    return {_sample_id(r): load_sample(os.path.join(run_dir, r["path"]), r.get("frames", 1)) for r in records}


def _load_baseline(run_dir: str, records: list[dict[str, Any]]) -> _Baseline:
    """The baseline entry's samples, wall-clock and denoiser seconds."""
    return _Baseline(
        samples=_load_samples(run_dir, records),
        latency={_sample_id(r): r["latency_s"] for r in records},
        denoiser={_sample_id(r): r["denoiser_s"] for r in records},
    )


def _make_scorers(spec: SweepSpec) -> _Scorers:
    """Build the scorers of the metrics the sweep asks for (domain metrics only for built-in models)."""
    scorers = _Scorers(metrics=spec.metric_names())
    if "domain" in scorers.metrics and spec.builtin:
        from ..metrics.domain import DomainMetrics
        from ..pipelines.builtin import BUILTIN_MODELS

        scorers.domain = DomainMetrics(BUILTIN_MODELS[spec.model].dataset)
        scorers.real = scorers.domain.real_samples()
    if "clip" in scorers.metrics:
        from ..metrics.clip import DEFAULT_CLIP, ClipScorer

        scorers.clip = ClipScorer(spec.clip_model or DEFAULT_CLIP)
    if "lpips" in scorers.metrics:
        from ..metrics.fidelity import LPIPS

        scorers.lpips = LPIPS()
    return scorers


def _score_entry(
    run_dir: str,
    name: str,
    records: list[dict[str, Any]],
    meta: dict[str, Any],
    flops: dict[str, Any],
    baseline: _Baseline,
    scorers: _Scorers,
) -> dict[str, Any]:
    """The summary row of one grid entry."""
    samples = _load_samples(run_dir, records)
    row = _cost_columns(name, records, meta, flops, baseline, len(samples))
    if "fidelity" in scorers.metrics and name != BASELINE:
        row.update(_fidelity_columns(samples, baseline.samples, scorers.lpips))
    ordered = sorted(samples)
    tensor = torch.stack([samples[i] for i in ordered])
    prompts = {_sample_id(r): r["prompt"] for r in records}
    prompt_list = [prompts[i] for i in ordered]
    if scorers.domain is not None:
        row.update(_domain_columns(scorers.domain, scorers.real, tensor, ordered, prompt_list))
    if scorers.clip is not None:
        row.update(_clip_columns(scorers.clip, tensor, prompt_list))
    return row


def _cost_columns(
    name: str,
    records: list[dict[str, Any]],
    meta: dict[str, Any],
    flops: dict[str, Any],
    baseline: _Baseline,
    n_samples: int,
) -> dict[str, Any]:
    """The entry's description, latency, speedup, FLOP-ratio, NFE and cache-size columns."""
    latency = {_sample_id(r): r["latency_s"] for r in records}
    denoiser = {_sample_id(r): r["denoiser_s"] for r in records}
    speedup, speedup_p10, speedup_p90 = _ratio_stats(baseline.latency, latency)
    dn_speedup, _, _ = _ratio_stats(baseline.denoiser, denoiser)
    return {
        "config": name,
        "kind": meta.get("kind", "method"),
        "steps": meta.get("steps"),
        "samples": n_samples,
        "latency_s": statistics.median(latency.values()),
        "speedup": speedup,
        "speedup_p10": speedup_p10,
        "speedup_p90": speedup_p90,
        "denoiser_speedup": dn_speedup,
        "flop_ratio": _flop_ratio(flops, name),
        "nfe": _mean_std([r.get("nfe") or float("nan") for r in records])[0],
        "cache_bytes": max((_cache_bytes(r) for r in records), default=0),
    }


def _flop_ratio(flops: dict[str, Any], name: str) -> float:
    """Baseline FLOPs over the entry's, NaN when either is unknown."""
    return (flops[BASELINE] / flops[name]) if flops.get(name) and flops.get(BASELINE) else float("nan")


def _fidelity_columns(
    samples: dict[str, torch.Tensor], base_samples: dict[str, torch.Tensor], lpips: Any
) -> dict[str, float]:
    """PSNR, SSIM and (with an LPIPS scorer) LPIPS to the baseline sample of the same prompt and seed."""
    from ..metrics.fidelity import psnr, ssim

    ids = [i for i in samples if i in base_samples]
    stack = torch.stack([samples[i] for i in ids])
    ref = torch.stack([base_samples[i] for i in ids])
    row: dict[str, float] = {}
    row["psnr"], row["psnr_std"] = _mean_std(psnr(stack, ref).clamp(max=100).tolist())
    row["ssim"], row["ssim_std"] = _mean_std(ssim(stack, ref).tolist())
    if lpips is not None:
        row["lpips"], row["lpips_std"] = _mean_std(lpips(stack, ref).tolist())
    return row


def _domain_columns(
    domain: Any, real: torch.Tensor, tensor: torch.Tensor, ids: list[str], prompts: list[str]
) -> dict[str, float]:
    """FID (and its spread over seed folds), alignment and, for videos, temporal consistency."""
    row: dict[str, float] = {"fid": domain.fid(real, tensor), "fid_std": _fold_std(domain, real, tensor, ids)}
    row["alignment"], row["alignment_std"] = _mean_std(domain.alignment(tensor, prompts).tolist())
    if tensor.ndim == 5:
        row["temporal_consistency"], _ = _mean_std(domain.temporal_consistency(tensor).tolist())
    return row


def _clip_columns(clip: Any, tensor: torch.Tensor, prompts: list[str]) -> dict[str, float]:
    """CLIP score of each sample (the middle frame of a video) against its prompt."""
    frames = tensor[:, tensor.shape[1] // 2] if tensor.ndim == 5 else tensor
    row: dict[str, float] = {}
    row["clip_score"], row["clip_score_std"] = _mean_std(clip(frames, prompts).tolist())
    return row


def _row_order(row: dict[str, Any]) -> tuple[int, float]:
    """Sort key of the summary: baseline, fewer-steps, then methods, each by decreasing speedup."""
    return {"baseline": 0, "fewer_steps": 1, "method": 2}.get(row["kind"], 3), -(row["speedup"] or 0)


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
            points = [
                (r["speedup"], r.get(metric))
                for r in curve
                if r.get(metric) is not None
                and math.isfinite(r[metric])
                and not (r["kind"] == "baseline" and metric in FIDELITY)
            ]
            value = row.get(metric)
            if len(points) < 2 or value is None or not math.isfinite(value) or not math.isfinite(row["speedup"]):
                continue
            reference = _interp([p[0] for p in points], [p[1] for p in points], row["speedup"])
            if (value > reference) if higher else (value < reference):
                beats.append(metric)
        row["beats_fewer_steps"] = ",".join(beats)


COLUMNS = [
    "config",
    "kind",
    "steps",
    "samples",
    "speedup",
    "speedup_p10",
    "speedup_p90",
    "denoiser_speedup",
    "flop_ratio",
    "nfe",
    "latency_s",
    "psnr",
    "psnr_std",
    "ssim",
    "ssim_std",
    "lpips",
    "lpips_std",
    "fid",
    "fid_std",
    "alignment",
    "alignment_std",
    "temporal_consistency",
    "clip_score",
    "clip_score_std",
    "cache_bytes",
    "beats_fewer_steps",
]


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
    cols = [
        c
        for c in (
            "config",
            "speedup",
            "flop_ratio",
            "nfe",
            "psnr",
            "ssim",
            "fid",
            "alignment",
            "temporal_consistency",
            "clip_score",
            "beats_fewer_steps",
        )
        if any(c in r for r in rows)
    ]
    header = {c: c.replace("temporal_consistency", "temporal") for c in cols}
    table = [[header[c] for c in cols]] + [[str(_fmt(r.get(c, ""))) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in table)
