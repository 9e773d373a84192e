"""What ``accel tune`` writes besides its evaluations: the plan's plots (``front.png`` / ``front.html``),
the ``accel eval`` spec of the plan on held-out prompts, and data-file paths kept relative to the
tune folder so that it can move."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from ..files import atomic_write
from ..plan import Plan, PlanSetting

#: samples the generated eval spec asks for (at least), enough for FID with fold spreads on the built-in models
EVAL_SAMPLES = 48
#: fewer unseen prompts than this and the generated eval spec uses every prompt (with unseen seeds)
MIN_EVAL_PROMPTS = 20


def portable_paths(data: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Paths inside the tune folder stored relative to it (the folder can move)."""
    root = os.path.abspath(out_dir)
    for key, value in data.items():
        if isinstance(value, str) and os.path.isabs(value) and value.startswith(root + os.sep):
            data[key] = os.path.relpath(value, root)
    return data


def local_paths(data: dict[str, Any], out_dir: str) -> dict[str, Any]:
    data = dict(data)
    for key, value in data.items():
        if isinstance(value, str) and os.path.isfile(os.path.join(out_dir, value)) and not os.path.isabs(value):
            data[key] = os.path.join(os.path.abspath(out_dir), value)
    return data


def plot_plan(plan: Plan, result: dict[str, Any], promised: dict[str, dict], stem: str) -> tuple[str, str]:
    """The plan's front (promised on calibration, validated on held-out samples) against fewer steps,
    as ``stem.png`` and ``stem.html``."""

    # the full-step baseline itself (1x, identical output) is left off: its PSNR is capped at 100 dB
    def curve(name: str) -> list[dict[str, Any]]:
        return sorted((r for r in plan.info.get(name, []) if r["speedup"] > 1.001), key=lambda r: r["speedup"])

    curves = _Curves(
        fewer=curve("fewer_steps"),
        searched=curve("searched_schedule"),
        solver=curve("best_solver"),
        settings=[s for s in plan.settings if s.speedup > 1.001],
        front=[k for k in result["front"] if promised[k]["flops_ratio"] < 0.999],
        promised=promised,
    )
    _plot_png(plan, curves, stem + ".png")
    _plot_html(plan, curves, stem + ".html")
    return stem + ".png", stem + ".html"


@dataclasses.dataclass(frozen=True)
class _Rival:
    field: str  # of _Curves
    label: str
    marker: str  # matplotlib
    dash: str  # plotly
    color: str  # a name both know (matplotlib as "tab:<color>")


#: The stronger fewer-steps rivals drawn beside the plain curve, in both plots.
_RIVALS = (
    _Rival("searched", "fewer steps, searched schedule", ":^", "dot", "green"),
    _Rival("solver", "fewer steps, best other solver", "-.v", "dashdot", "purple"),
)


def _rival_text(row: dict[str, Any]) -> str:
    solver = f", {row['solver']}{' + schedule' if row.get('schedule') else ''}" if row.get("solver") else ""
    return f"{row['num_inference_steps']} steps{solver}"


@dataclasses.dataclass(frozen=True)
class _Curves:
    fewer: list[dict[str, Any]]
    searched: list[dict[str, Any]]  # fewer steps on the searched timestep schedule
    solver: list[dict[str, Any]]  # fewer steps with the best other solver (on its schedule where that won)
    settings: list[PlanSetting]
    front: list[str]
    promised: dict[str, dict]


def _plot_png(plan: Plan, curves: _Curves, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, fewer, settings, promised = plan.metric, curves.fewer, curves.settings, curves.promised
    fig, ax = plt.subplots(figsize=(6, 4.4))
    ax.plot(
        [r["speedup"] for r in fewer], [r[metric] for r in fewer], "--s", color="gray", label="fewer steps (held out)"
    )
    for r in fewer:
        ax.annotate(
            f"{r['num_inference_steps']}",
            (r["speedup"], r[metric]),
            fontsize=7,
            color="gray",
            xytext=(3, -9),
            textcoords="offset points",
        )
    for rival in _RIVALS:
        rows = getattr(curves, rival.field)
        if rows:
            x, y = [r["speedup"] for r in rows], [r[metric] for r in rows]
            ax.plot(x, y, rival.marker, color=f"tab:{rival.color}", label=f"{rival.label} (held out)")
    xs = [s.speedup for s in settings]
    ax.plot(
        xs, [s.quality["validated"][metric] for s in settings], "-o", color="tab:blue", label="tuned plan (held out)"
    )
    ax.plot(
        [1 / promised[k]["flops_ratio"] for k in curves.front],
        [promised[k][metric] for k in curves.front],
        "o",
        mfc="none",
        color="tab:orange",
        label="front on calibration (promised)",
    )
    ax.set_xlabel("denoiser FLOP speedup over the full-step baseline (x)")
    ax.set_ylabel(f"{metric} to the full-step output (higher is better)")
    ax.set_title(f"accel tune: {plan.model}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=130)
    plt.close(fig)


def _plot_html(plan: Plan, curves: _Curves, path: str) -> None:
    import plotly.graph_objects as go

    metric, fewer, settings, promised = plan.metric, curves.fewer, curves.settings, curves.promised
    xs = [s.speedup for s in settings]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[r["speedup"] for r in fewer],
            y=[r[metric] for r in fewer],
            mode="lines+markers",
            name="fewer steps",
            text=[f"{r['num_inference_steps']} steps" for r in fewer],
            line={"dash": "dash", "color": "gray"},
        )
    )
    for rival in _RIVALS:
        rows = getattr(curves, rival.field)
        if rows:
            figure.add_trace(
                go.Scatter(
                    x=[r["speedup"] for r in rows],
                    y=[r[metric] for r in rows],
                    mode="lines+markers",
                    name=rival.label,
                    text=[_rival_text(r) for r in rows],
                    line={"dash": rival.dash, "color": rival.color},
                )
            )
    figure.add_trace(
        go.Scatter(
            x=xs,
            y=[s.quality["validated"][metric] for s in settings],
            mode="lines+markers",
            name="tuned plan",
            text=[str(s) for s in settings],
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[1 / promised[k]["flops_ratio"] for k in curves.front],
            y=[promised[k][metric] for k in curves.front],
            mode="markers",
            name="front on calibration",
            marker={"symbol": "circle-open"},
        )
    )
    figure.update_layout(
        title=f"accel tune: {plan.model}",
        xaxis_title="denoiser FLOP speedup (x)",
        yaxis_title=f"{metric} to the full-step output",
    )
    with atomic_write(path) as f:
        figure.write_html(f, include_plotlyjs="cdn")


def recorded_call(call: dict[str, Any]) -> dict[str, Any]:
    """The call arguments a plan records (JSON values; the step count and guidance have fields of their own)."""
    return {
        k: v
        for k, v in call.items()
        if k not in ("num_inference_steps", "guidance_scale") and (isinstance(v, (int, float, str, bool)) or v is None)
    }


def write_eval_spec(
    plan: Plan, out_dir: str, model: str, call: dict[str, Any], held_out: list[str], all_prompts: list[str]
) -> str:
    """``out_dir/eval.yaml``: an ``accel eval`` sweep of the plan's settings and the fewer-steps curve on
    prompts and seeds the search never saw, for domain FID and alignment with fold spreads. Every path
    in it is absolute, so it runs from any folder."""
    import yaml

    from ..pipelines.builtin import BUILTIN_MODELS

    out_dir = os.path.abspath(out_dir)
    note = "prompts and seeds the search never saw"
    if len(held_out) < MIN_EVAL_PROMPTS:
        # too few unseen prompts to cover the domain (FID compares against all of it): every prompt,
        # with seeds the search never used
        held_out, note = (
            all_prompts,
            "every prompt (too few unseen ones to cover the domain), seeds the search never used",
        )
    prompt_file = os.path.join(out_dir, "eval_prompts.txt")
    with atomic_write(prompt_file) as f:
        f.write("\n".join(held_out) + "\n")
    base = plan.info["baseline_steps"]
    local = model not in BUILTIN_MODELS and os.path.isdir(os.path.expanduser(model))
    spec = {
        "model": os.path.abspath(os.path.expanduser(model)) if local else model,  # the spec works from any folder
        "dtype": plan.info.get("ran", {}).get("dtype", "auto"),
        "name": f"{os.path.basename(model.rstrip('/'))}-plan",
        "steps": base,
        "prompts": prompt_file,
        "seeds_per_prompt": max(2, math.ceil(EVAL_SAMPLES / max(1, len(held_out)))),
        "base_seed": 10_000,
        "fewer_steps": sorted({r["num_inference_steps"] for r in plan.info["fewer_steps"]} - {base}),
        "configs": [
            {"steps": s.num_inference_steps, "configs": [c.to_dict() for c in s.plugins]}
            for s in plan.settings
            if s.plugins
        ],
    }
    if call.get("guidance_scale") is not None:
        spec["guidance_scale"] = call["guidance_scale"]
    if recorded_call(call):
        spec["call"] = recorded_call(call)
    path = os.path.join(out_dir, "eval.yaml")
    with atomic_write(path) as f:
        f.write(f"# accel eval of this plan on {note}: accel eval {path}\n")
        yaml.safe_dump(spec, f, sort_keys=False)
    return path
