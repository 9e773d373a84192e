"""Does a method beat simply taking fewer sampling steps at its own speed? A paired bootstrap says.
Where the sweep has searched timestep schedules, fewer steps on them are a second rival curve; where it
names a solver, fewer steps with that solver are a third; the verdict is taken against whichever rival
the method gains least over.

At a method's speed ``x`` (FLOP ratio or wall-clock speedup), the fewer-steps reference is the
log-linear interpolation between the two fewer-steps entries (the baseline included) that bracket
``x``. Every entry ran on the same prompts and seeds, so the comparison is paired: per-sample
metrics (PSNR, SSIM, LPIPS, alignment, CLIP score, temporal consistency) compare sample by sample,
and FID is recomputed on the same resampled set of samples for the method and its references.
Resampling the samples ``B`` times gives a 95% interval of the quality difference; the verdict is
``"beats"`` or ``"loses"`` only when the interval excludes zero, otherwise ``"ties"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BOOTSTRAP = 400
CONFIDENCE = 0.95


@dataclass
class EntryValues:
    """What the verdicts need of one grid entry: its speed and its per-sample metric values."""

    kind: str
    speed: float
    per_sample: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> {sample id: value}
    features: dict[str, np.ndarray] = field(default_factory=dict)  # sample id -> FID features (frames x dim)


def frechet_distance(real_mu: np.ndarray, real_cov: np.ndarray, fake: np.ndarray) -> float:
    """FID between a real set's Gaussian and the rows of ``fake``, via the eigenvalues of ``S_r S_f``."""
    mu = fake.mean(0)
    cov = np.cov(fake, rowvar=False) if len(fake) > 1 else np.zeros_like(real_cov)
    eig = np.linalg.eigvals(real_cov @ cov)
    trace_sqrt = float(np.sqrt(np.clip(eig.real, 0, None)).sum())
    return float(((real_mu - mu) ** 2).sum() + np.trace(real_cov) + np.trace(cov) - 2 * trace_sqrt)


def _weights(curve: list[tuple[str, float]], x: float) -> list[tuple[str, float]]:
    """Interpolation weights of the curve entries at speed ``x`` (log speed; clamped at the ends)."""
    points = sorted((math.log(s), name) for name, s in curve)
    lx = math.log(x)
    if lx <= points[0][0]:
        return [(points[0][1], 1.0)]
    if lx >= points[-1][0]:
        return [(points[-1][1], 1.0)]
    for (x0, n0), (x1, n1) in zip(points, points[1:]):
        if x0 <= lx <= x1:
            t = (lx - x0) / (x1 - x0) if x1 > x0 else 0.0
            return [(n0, 1 - t), (n1, t)]
    raise AssertionError("unreachable")


def _interval(samples: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    return float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))


def paired_difference(
    method: dict[str, float], references: list[tuple[dict[str, float], float]], higher: bool, rng: np.random.Generator
) -> tuple[float, float, float] | None:
    """Mean improvement of ``method`` over the weighted references, and its bootstrap interval."""
    ids = sorted(set(method).intersection(*(set(ref) for ref, _ in references)))
    ids = [i for i in ids if all(math.isfinite(v) for v in [method[i], *(ref[i] for ref, _ in references)])]
    if len(ids) < 2:
        return None
    ref = sum(w * np.array([r[i] for i in ids]) for r, w in references)
    diff = np.array([method[i] for i in ids]) - ref
    diff = diff if higher else -diff
    draws = rng.integers(0, len(ids), size=(BOOTSTRAP, len(ids)))
    low, high = _interval(diff[draws].mean(1))
    return float(diff.mean()), low, high


def fid_difference(
    method: dict[str, np.ndarray],
    references: list[tuple[dict[str, np.ndarray], float]],
    real: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> tuple[float, float, float] | None:
    """FID improvement (reference minus method) on common samples, and its bootstrap interval."""
    ids = sorted(set(method).intersection(*(set(ref) for ref, _ in references)))
    if len(ids) < 3:
        return None

    def improvement(chosen: list[str]) -> float:
        own = frechet_distance(*real, np.concatenate([method[i] for i in chosen]))
        ref = sum(w * frechet_distance(*real, np.concatenate([r[i] for i in chosen])) for r, w in references)
        return ref - own

    point = improvement(ids)
    draws = [improvement([ids[k] for k in rng.integers(0, len(ids), size=len(ids))]) for _ in range(BOOTSTRAP // 4)]
    low, high = _interval(np.array(draws))
    return point, low, high


def judge(
    entries: dict[str, EntryValues],
    quality: dict[str, bool],
    fidelity: tuple[str, ...],
    real_features: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method: {metric: {"verdict", "difference", "low", "high", "rival"}}}`` against the strongest rival
    curve at the method's speed: plain fewer steps, or fewer steps on a searched schedule where the sweep
    has them (each curve starts at the baseline). The rival is the curve the method gains least over."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, entry in entries.items():
        if entry.kind != "method" or not math.isfinite(entry.speed) or entry.speed <= 0:
            continue
        out[name] = {}
        for metric, higher in quality.items():
            results = []
            for rival, kind in RIVALS.items():
                result = _against_curve(
                    entries, entry, ("baseline", kind), metric, higher, fidelity, real_features, rng
                )
                if result is not None:
                    results.append((result, rival))
            if not results:
                continue
            (difference, low, high), rival = min(results, key=lambda r: r[0][0])
            verdict = "beats" if low > 0 else "loses" if high < 0 else "ties"
            out[name][metric] = {
                "verdict": verdict,
                "difference": difference,
                "low": low,
                "high": high,
                "rival": rival,
            }
    return out


#: rival curve -> the kind of its entries (the baseline belongs to each)
RIVALS = {
    "fewer steps": "fewer_steps",
    "fewer steps, searched schedule": "fewer_steps_schedule",
    "fewer steps, best solver": "fewer_steps_solver",
}


def _against_curve(
    entries: dict[str, EntryValues],
    entry: EntryValues,
    curve_kinds: tuple[str, str],
    metric: str,
    higher: bool,
    fidelity: tuple[str, ...],
    real_features: tuple[np.ndarray, np.ndarray] | None,
    rng: np.random.Generator,
) -> tuple[float, float, float] | None:
    """The method's gain over one rival curve interpolated at its speed, with its interval (None: the
    curve has fewer than two usable points besides the baseline's, or the metric is missing)."""
    usable = [
        (n, e.speed)
        for n, e in entries.items()
        if e.kind in curve_kinds
        and math.isfinite(e.speed)
        and e.speed > 0
        and not (e.kind == "baseline" and metric in fidelity)
        and (e.features if metric == "fid" else e.per_sample.get(metric))
    ]
    if len(usable) < 2 or not any(entries[n].kind != "baseline" for n, _ in usable):
        return None
    weights = _weights(usable, entry.speed)
    if metric == "fid":
        if real_features is None or not entry.features:
            return None
        return fid_difference(entry.features, [(entries[n].features, w) for n, w in weights], real_features, rng)
    if metric not in entry.per_sample:
        return None
    refs = [(entries[n].per_sample[metric], w) for n, w in weights]
    return paired_difference(entry.per_sample[metric], refs, higher, rng)
