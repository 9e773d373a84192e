"""Scoring phase of ``accel eval``: one summary row per grid entry, from the run folder alone.

Per entry: wall-clock and denoiser-only speedup over the baseline (median of per-sample paired
ratios, each sample timed in the same round as the baseline's, with the 10th-90th percentile
spread), the FLOP ratio beside them (denoiser FLOPs scaled to the entry's mean NFE over all
samples), NFEs, plugin cache bytes, fidelity to the baseline sample of the same prompt and seed
(PSNR, SSIM, optional LPIPS), and, for the built-in models, domain FID (all samples; spread over 3
seed folds), alignment and (for video) temporal consistency.

``speed`` is the x axis of the curves and of the verdicts: the FLOP ratio or the wall-clock
speedup (``speed_axis``). ``beats_fewer_steps`` / ``loses_to_fewer_steps`` list the metrics on
which the entry is significantly above / below the fewer-steps curve at its own speed, by a paired
bootstrap (:mod:`.verdicts`); everything else is a tie.
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
from ..files import atomic_write, write_json
from .records import read_records
from .runner import BASELINE, load_sample
from .spec import SweepSpec
from .verdicts import EntryValues, judge

#: Relative 10th-90th percentile spread of the paired wall-clock ratios above which timing is noisy.
WIDE_SPREAD = 0.25
SPEED_AXES = ("auto", "flops", "wall")

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
    nfe: float


@dataclass
class _Scored:
    """One entry's summary row and the per-sample values its verdicts need."""

    row: dict[str, Any]
    values: EntryValues


@dataclass
class _Scorers:
    """The metric names of the sweep and the scorers they need (None: not computed)."""

    metrics: list[str]
    domain: Any = None
    real: torch.Tensor | None = None
    clip: Any = None
    lpips: Any = None


def score_run(run_dir: str, spec: SweepSpec, speed: str = "auto") -> list[dict[str, Any]]:
    """Compute, write (``summary.csv``, ``summary.json``) and return the summary rows.

    ``speed`` picks the x axis of the verdicts and plots: ``"flops"``, ``"wall"``, or ``"auto"``
    (wall clock unless some entry's paired timing spread exceeds :data:`WIDE_SPREAD`).
    """
    if speed not in SPEED_AXES:
        raise ConfigError(f"speed must be one of {list(SPEED_AXES)}, got {speed!r}")
    by_entry = _records_by_entry(run_dir)
    entry_meta = _entry_meta(run_dir)
    flops = _load_flops(run_dir)
    baseline = _load_baseline(run_dir, by_entry[BASELINE])
    scorers = _make_scorers(spec)
    scored = {
        name: _score_entry(run_dir, name, entry_records, entry_meta.get(name, {}), flops, baseline, scorers)
        for name, entry_records in by_entry.items()
    }
    rows = [s.row for s in scored.values()]
    axis = choose_axis(rows, speed)
    for item in scored.values():
        item.row["speed_axis"] = axis
        item.row["speed"] = item.row["flop_ratio"] if axis == "flops" else item.row["speedup"]
        item.values.speed = item.row["speed"]
    real = _real_features(scorers)
    verdicts = judge({n: s.values for n, s in scored.items()}, QUALITY, FIDELITY, real)
    for name, by_metric in verdicts.items():
        row = scored[name].row
        row["verdicts"] = by_metric
        row["beats_fewer_steps"] = ",".join(m for m, v in by_metric.items() if v["verdict"] == "beats")
        row["loses_to_fewer_steps"] = ",".join(m for m, v in by_metric.items() if v["verdict"] == "loses")
    rows.sort(key=_row_order)
    write_summary(run_dir, rows)
    return rows


def timing_spread(row: dict[str, Any]) -> float:
    """Relative 10th-90th percentile spread of an entry's paired wall-clock speedups (0: perfectly steady)."""
    low, high, mid = row.get("speedup_p10"), row.get("speedup_p90"), row.get("speedup")
    if not all(isinstance(v, float) and math.isfinite(v) for v in (low, high, mid)) or mid <= 0:
        return float("nan")
    return (high - low) / mid


def noisy_timing(rows: list[dict[str, Any]]) -> list[str]:
    """Entries whose paired wall-clock speedups spread wider than :data:`WIDE_SPREAD`."""
    return [r["config"] for r in rows if r["kind"] != "baseline" and timing_spread(r) > WIDE_SPREAD]


def choose_axis(rows: list[dict[str, Any]], speed: str) -> str:
    """The speed axis: as asked, or for ``"auto"`` FLOPs when timing was noisy or FLOPs are all there is."""
    if speed != "auto":
        return speed
    has_flops = all(math.isfinite(r.get("flop_ratio", float("nan"))) for r in rows)
    return "flops" if has_flops and noisy_timing(rows) else "wall"


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
        nfe=_mean_std([r.get("nfe") or float("nan") for r in records])[0],
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
    """The summary row of one grid entry, with the per-sample values its verdicts need."""
    samples = _load_samples(run_dir, records)
    row = _cost_columns(name, records, meta, flops, baseline, len(samples))
    values = EntryValues(kind=row["kind"], speed=float("nan"))
    ordered = sorted(samples)
    tensor = torch.stack([samples[i] for i in ordered])
    if "fidelity" in scorers.metrics and name != BASELINE:
        values.per_sample.update(_fidelity_values(samples, baseline.samples, scorers.lpips))
    prompts = {_sample_id(r): r["prompt"] for r in records}
    prompt_list = [prompts[i] for i in ordered]
    if scorers.domain is not None:
        row.update(_domain_columns(scorers.domain, scorers.real, tensor, ordered))
        values.per_sample.update(_domain_values(scorers.domain, tensor, ordered, prompt_list))
        values.features = _fid_features(scorers.domain, tensor, ordered)
    if scorers.clip is not None:
        frames = tensor[:, tensor.shape[1] // 2] if tensor.ndim == 5 else tensor  # a video's middle frame
        values.per_sample["clip_score"] = dict(zip(ordered, scorers.clip(frames, prompt_list).tolist()))
    for metric, by_sample in values.per_sample.items():
        row[metric], row[f"{metric}_std"] = _mean_std(list(by_sample.values()))
    return _Scored(row, values)


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
        **_flop_columns(flops, name, records, baseline.nfe, meta.get("kind", "method")),
        "nfe": _mean_std([r.get("nfe") or float("nan") for r in records])[0],
        "cache_bytes": max((_cache_bytes(r) for r in records), default=0),
    }


def _mean_flops(measured: Any, mean_nfe: float) -> tuple[float, float]:
    """``(pipeline, denoiser)`` FLOPs per sample: the counted call, its denoiser part scaled to ``mean_nfe``.

    Plugins that drop CFG rows (adaptive guidance) run fewer NFEs on some samples than on the counted
    one; the denoiser's FLOPs scale with the NFEs, the rest of the pipeline does not. Older runs
    stored a bare total (no scaling possible).
    """
    if not isinstance(measured, dict):
        return (float(measured), float("nan")) if measured else (float("nan"), float("nan"))
    denoiser, nfe = float(measured.get("denoiser") or 0), measured.get("nfe")
    scale = mean_nfe / nfe if nfe and math.isfinite(mean_nfe) and mean_nfe > 0 else 1.0
    rest = float(measured["total"]) - denoiser
    return rest + denoiser * scale, denoiser * scale


def _flop_columns(
    flops: dict[str, Any], name: str, records: list[dict[str, Any]], baseline_nfe: float, kind: str = "method"
) -> dict[str, float]:
    """Baseline FLOPs over the entry's, for the whole pipeline and the denoiser alone (NaN when unknown).

    A fewer-steps entry without a count of its own is the baseline's count with the denoiser part
    scaled to its NFEs: each of its steps is the baseline's denoiser call.
    """
    base = flops.get(BASELINE)
    measured = flops.get(name)
    if not measured and kind == "fewer_steps" and isinstance(base, dict):
        measured = base
    if not measured or not base:
        return {"flop_ratio": float("nan"), "denoiser_flop_ratio": float("nan")}
    mean_nfe = _mean_std([r.get("nfe") or float("nan") for r in records])[0]
    base_total, base_denoiser = _mean_flops(base, baseline_nfe)
    total, denoiser = _mean_flops(measured, mean_nfe)
    denoiser_ratio = base_denoiser / denoiser if denoiser else float("nan")
    return {"flop_ratio": base_total / total, "denoiser_flop_ratio": denoiser_ratio}


def _fidelity_values(
    samples: dict[str, torch.Tensor], base_samples: dict[str, torch.Tensor], lpips: Any
) -> dict[str, dict[str, float]]:
    """Per-sample PSNR, SSIM and (with an LPIPS scorer) LPIPS to the baseline sample of the same prompt and seed."""
    from ..metrics.fidelity import psnr, ssim

    ids = [i for i in samples if i in base_samples]
    stack = torch.stack([samples[i] for i in ids])
    ref = torch.stack([base_samples[i] for i in ids])
    capped = psnr(stack, ref).clamp(max=100)  # identical samples: 100 dB, not inf
    out = {"psnr": dict(zip(ids, capped.tolist())), "ssim": dict(zip(ids, ssim(stack, ref).tolist()))}
    if lpips is not None:
        out["lpips"] = dict(zip(ids, lpips(stack, ref).tolist()))
    return out


def _domain_columns(domain: Any, real: torch.Tensor, tensor: torch.Tensor, ids: list[str]) -> dict[str, float]:
    """FID of all samples and its spread over seed folds."""
    return {"fid": domain.fid(real, tensor), "fid_std": _fold_std(domain, real, tensor, ids)}


def _domain_values(
    domain: Any, tensor: torch.Tensor, ids: list[str], prompts: list[str]
) -> dict[str, dict[str, float]]:
    """Per-sample alignment and, for videos, temporal consistency."""
    out = {"alignment": dict(zip(ids, domain.alignment(tensor, prompts).tolist()))}
    if tensor.ndim == 5:
        out["temporal_consistency"] = dict(zip(ids, domain.temporal_consistency(tensor).tolist()))
    return out


@torch.no_grad()
def _fid_features(domain: Any, tensor: torch.Tensor, ids: list[str]) -> dict[str, np.ndarray]:
    """Per sample, the FID features of its frames (one row per frame), float64."""
    frames = domain.frames(tensor).float()
    features = torch.cat([domain.classifier(chunk) for chunk in frames.split(256)]).double().numpy()
    per_sample = len(frames) // len(ids)
    return {i: features[k * per_sample : (k + 1) * per_sample] for k, i in enumerate(ids)}


def _real_features(scorers: _Scorers) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and covariance of the real set's FID features, for the FID verdicts."""
    if scorers.domain is None:
        return None
    with torch.no_grad():
        frames = scorers.domain.frames(scorers.real).float()
        features = torch.cat([scorers.domain.classifier(chunk) for chunk in frames.split(256)]).double().numpy()
    return features.mean(0), np.cov(features, rowvar=False)


def _row_order(row: dict[str, Any]) -> tuple[int, float]:
    """Sort key of the summary: baseline, fewer-steps, then methods, each by decreasing speedup."""
    order = {"baseline": 0, "fewer_steps": 1, "fewer_steps_schedule": 2, "fewer_steps_solver": 3, "method": 4}
    return order.get(row["kind"], 5), -(row["speedup"] or 0)


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
    "denoiser_flop_ratio",
    "speed_axis",
    "speed",
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
    "temporal_consistency_std",
    "cache_bytes",
    "beats_fewer_steps",
    "loses_to_fewer_steps",
]


def write_summary(run_dir: str, rows: list[dict[str, Any]]) -> None:
    present = [c for c in COLUMNS if any(c in r for r in rows)]
    with atomic_write(os.path.join(run_dir, "summary.csv"), newline="") as f:
        writer = csv.DictWriter(f, fieldnames=present, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in present})
    write_json(os.path.join(run_dir, "summary.json"), rows, indent=2, default=str)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return value


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of the main columns (for the terminal); the header names the speed axis."""
    axis = next((r.get("speed_axis") for r in rows if r.get("speed_axis")), None)
    cols = [
        c
        for c in (
            "config",
            "speed",
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
            "loses_to_fewer_steps",
        )
        if any(c in r for r in rows)
    ]
    names = {
        "speed": f"speed ({axis})" if axis else "speed",
        "speedup": "wall",
        "flop_ratio": "flops",
        "temporal_consistency": "temporal",
        "beats_fewer_steps": "beats fewer steps",
        "loses_to_fewer_steps": "loses to fewer steps",
    }
    table = [[names.get(c, c) for c in cols]] + [[str(_fmt(r.get(c, ""))) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in table)
