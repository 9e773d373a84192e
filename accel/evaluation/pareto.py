"""Quality-speed plots: ``pareto.png`` (for reading) and ``pareto.html`` (interactive, plotly).

One panel per quality metric against the speed over the baseline, on the run's speed axis (FLOP
ratio or wall-clock speedup, ``row["speed_axis"]``). The baseline is a star at 1x; the fewer-steps
baseline is a dashed line (labelled with its step counts); every method entry is a point with a
short label (the full config is in the hover text and the table) and error bars: the standard error
of the mean over samples (FID: its spread over seed folds) and, on the wall-clock axis, the 10th-90th
percentile of the paired speedups. Points on the Pareto front (no other entry is both faster and
better on that metric) get a black edge.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from ..files import atomic_write
from .scoring import FIDELITY, QUALITY

LABELS = {
    "psnr": "PSNR to baseline (dB, higher is better)",
    "ssim": "SSIM to baseline (higher is better)",
    "lpips": "LPIPS to baseline (lower is better)",
    "fid": "domain FID (lower is better)",
    "alignment": "prompt alignment (higher is better)",
    "clip_score": "CLIP score (higher is better)",
    "temporal_consistency": "temporal consistency (higher is better)",
    "image_reward": "ImageReward (higher is better)",
}


AXIS_LABELS = {"flops": "FLOP ratio over baseline (x)", "wall": "wall-clock speedup over baseline (x)"}


def speed(row: dict[str, Any]) -> float:
    """The row's position on the speed axis (summaries from before the axis choice: the wall-clock speedup)."""
    value = row.get("speed", row.get("speedup"))
    return float(value) if isinstance(value, (int, float)) else float("nan")


def axis_label(rows: list[dict[str, Any]]) -> str:
    axis = next((r.get("speed_axis") for r in rows if r.get("speed_axis")), "wall")
    return AXIS_LABELS.get(axis, AXIS_LABELS["wall"])


def short_label(name: str, limit: int = 18) -> str:
    """A plot label: each stacked config's family and its numbers (``ag_threshold0.99`` -> ``ag 0.99``)."""
    parts = []
    for config in name.split("+"):
        family = config.split("_")[0]
        numbers = re.findall(r"-?\d+(?:\.\d+)?", config[len(family) :])
        parts.append(" ".join([family, *numbers[:2]]))
    label = "+".join(parts)
    return label if len(label) <= limit else label[: limit - 1] + "…"


def error_bar(row: dict[str, Any], metric: str) -> float:
    """Standard error of the metric's mean over samples (FID: its spread over seed folds), 0 if unknown."""
    spread = row.get(f"{metric}_std")
    if not isinstance(spread, (int, float)) or not math.isfinite(spread):
        return 0.0
    if metric == "fid":
        return float(spread)
    return float(spread) / math.sqrt(max(int(row.get("samples") or 1), 1))


def speed_error(row: dict[str, Any]) -> tuple[float, float]:
    """The 10th-90th percentile of the paired wall-clock speedups around the point, on the wall axis."""
    if row.get("speed_axis") != "wall":
        return 0.0, 0.0
    low, high = row.get("speedup_p10"), row.get("speedup_p90")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)):
        return 0.0, 0.0
    return max(speed(row) - low, 0.0), max(high - speed(row), 0.0)


def pareto_front(rows: list[dict[str, Any]], metric: str) -> set[str]:
    """Config names not dominated in (speed, metric) by any other row."""
    higher = QUALITY[metric]
    points = [
        (r["config"], speed(r), r[metric])
        for r in rows
        if r.get(metric) is not None and math.isfinite(r.get(metric, float("nan"))) and math.isfinite(speed(r))
    ]
    front = set()
    for name, s, q in points:
        dominated = any(
            (s2 >= s and (q2 >= q if higher else q2 <= q)) and (s2 > s or q2 != q)
            for n2, s2, q2 in points
            if n2 != name
        )
        if not dominated:
            front.add(name)
    return front


def plot_metrics(rows: list[dict[str, Any]]) -> list[str]:
    return [
        m
        for m in ("psnr", "ssim", "fid", "alignment", "temporal_consistency", "clip_score", "lpips")
        if any(_ok(r, m) for r in rows)
    ]


def _family(name: str) -> str:
    return name.split("_")[0].split("+")[0]


def plot_png(rows: list[dict[str, Any]], path: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = plot_metrics(rows)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.6), squeeze=False)
    families = sorted({_family(r["config"]) for r in rows if r["kind"] == "method"})
    colours = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}
    for ax, metric in zip(axes[0], metrics):
        _plot_fewer_steps(ax, rows, metric)
        _plot_points(ax, rows, metric, colours)
        ax.set_xlabel(axis_label(rows))
        ax.set_ylabel(LABELS[metric])
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    fig.suptitle(f"{title}: quality vs speed (black edge: Pareto front; dashed: fewer-steps baseline)", fontsize=10)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=130)
    plt.close(fig)
    return path


#: the rival curves: entry kind -> (line style, colour, legend)
RIVAL_CURVES = {
    "fewer_steps": ("--o", "0.45", "fewer sampling steps"),
    "fewer_steps_schedule": (":^", "tab:green", "fewer steps, searched schedule"),
    "fewer_steps_solver": ("-.s", "tab:purple", "fewer steps, best solver"),
}


def _plot_fewer_steps(ax: Any, rows: list[dict[str, Any]], metric: str) -> None:
    """The dashed rival curves (each with the baseline), each point labelled with its step count."""
    for kind, (style, colour, label) in RIVAL_CURVES.items():
        curve = sorted([r for r in rows if r["kind"] in ("baseline", kind) and _ok(r, metric)], key=speed)
        if any(r["kind"] == kind for r in curve):
            _plot_curve(ax, curve, kind, metric, style, colour, label)


def _plot_curve(ax: Any, curve: list[dict[str, Any]], kind: str, metric: str, style: str, colour: Any, label: str):
    if curve:
        ax.plot(
            [speed(r) for r in curve],
            [r[metric] for r in curve],
            style,
            color=colour,
            ms=4,
            label=label,
            zorder=1,
        )
        for r in curve:
            if r["kind"] == kind:
                ax.annotate(
                    f"{r['steps']} st",
                    (speed(r), r[metric]),
                    fontsize=7,
                    color="0.35",
                    textcoords="offset points",
                    xytext=(3, -9),
                )


def _plot_points(ax: Any, rows: list[dict[str, Any]], metric: str, colours: dict[str, Any]) -> None:
    """The baseline (a star) and every method (error bars; a black edge on the Pareto front)."""
    front = pareto_front(rows, metric)
    for r in rows:
        if not _ok(r, metric):
            continue
        if r["kind"] == "baseline":
            ax.scatter(
                [speed(r)],
                [r[metric]],
                marker="*",
                s=220,
                color="gold",
                edgecolor="black",
                zorder=4,
                label=f"baseline ({r['steps']} steps)",
            )
        elif r["kind"] == "method":
            on_front = r["config"] in front
            low, high = speed_error(r)
            ax.errorbar(
                [speed(r)],
                [r[metric]],
                xerr=[[low], [high]],
                yerr=[error_bar(r, metric)],
                fmt="none",
                ecolor=colours[_family(r["config"])],
                alpha=0.6,
                zorder=2,
            )
            ax.scatter(
                [speed(r)],
                [r[metric]],
                s=60,
                color=colours[_family(r["config"])],
                edgecolor="black" if on_front else "none",
                linewidth=1.4,
                zorder=3,
                label=_family(r["config"]),
            )
            ax.annotate(
                short_label(r["config"]),
                (speed(r), r[metric]),
                fontsize=6.5,
                textcoords="offset points",
                xytext=(4, 4),
            )


def plot_html(rows: list[dict[str, Any]], path: str, title: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = plot_metrics(rows)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[LABELS[m] for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        front = pareto_front(rows, metric)
        kinds = (
            ("baseline", "star"),
            ("fewer_steps", "circle-open"),
            ("fewer_steps_schedule", "triangle-up-open"),
            ("fewer_steps_solver", "square-open"),
            ("method", "circle"),
        )
        for kind, symbol in kinds:
            pts = sorted([r for r in rows if r["kind"] == kind and _ok(r, metric)], key=speed)
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[speed(r) for r in pts],
                    y=[r[metric] for r in pts],
                    mode="markers+lines" if kind in RIVAL_CURVES else "markers",
                    name=kind,
                    legendgroup=kind,
                    showlegend=col == 1,
                    marker=dict(
                        symbol=symbol,
                        size=[14 if r["config"] in front else 9 for r in pts],
                        line=dict(width=[2 if r["config"] in front else 0 for r in pts], color="black"),
                    ),
                    error_y=dict(type="data", array=[error_bar(r, metric) for r in pts], visible=True),
                    text=[r["config"] for r in pts],
                    customdata=[r["config"] for r in pts],
                    hovertemplate="%{text}<br>speed %{x:.2f}x<br>" + metric + " %{y:.4g}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=axis_label(rows), row=1, col=col)
    fig.update_layout(title=title, height=480, width=420 * len(metrics))
    with atomic_write(path) as f:
        fig.write_html(f, include_plotlyjs=True)
    return path


def _ok(row: dict[str, Any], metric: str) -> bool:
    value = row.get(metric)
    if (
        value is None
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not math.isfinite(speed(row))
    ):
        return False
    return not (row["kind"] == "baseline" and metric in FIDELITY)


def write_plots(run_dir: str, rows: list[dict[str, Any]], title: str) -> tuple[str, str]:
    png = plot_png(rows, os.path.join(run_dir, "pareto.png"), title)
    html = plot_html(rows, os.path.join(run_dir, "pareto.html"), title)
    return png, html
