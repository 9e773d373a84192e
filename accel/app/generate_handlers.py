"""Event handlers of the generate tab: model selection, the tuned preset, custom models, generation
(UI and JSON API).

They take the model registry as a keyword-only ``registry`` argument (bound with
:func:`.handlers.bind`) and return Gradio updates; the work itself is in :mod:`.generation`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import gradio as gr

from ..errors import ConfigError
from ..files import parse_json
from . import presets, tuned
from .generation import GenerationRequest, GenerationResult, generate, to_display, to_gif
from .models import AppError, ModelEntry, ModelRegistry
from .plugin_panels import panel_support_updates, split_inputs, tuned_note, tuned_panel_updates

#: The longest ``plugins`` JSON the API accepts (every panel's settings fit in a few hundred characters).
MAX_PLUGINS_JSON = 16_384


def model_changed(name: str, *, registry: ModelRegistry) -> list[Any]:
    """Load the selected model and update its description, examples, size, frames, plugin panels and tuned panel."""
    entry = registry.get(name) if name else None
    error = None
    if entry is not None and entry.available:
        try:
            entry = registry.load(name)
        except AppError as exc:
            error = str(exc)
    if entry is None:
        info = "no model selected"
    else:
        info = _model_markdown(entry, entry.adapter_error() if entry.loaded else None)
        if error and entry.available:
            info += f"  \n{error}"
    loaded = entry is not None and entry.loaded
    examples = list(entry.examples) if entry is not None else []
    video = loaded and entry.kind == "video"
    updates: list[Any] = [
        info,
        gr.update(choices=examples, value=None, visible=bool(examples)),
        gr.update(maximum=entry.max_size, value=entry.default_size()) if loaded else gr.update(),
        gr.update(visible=True, value=entry.default_frames()) if video else gr.update(visible=False),
    ]
    support = (
        presets.support(entry.adapter())
        if loaded
        else {spec.key: "the model is not available" for spec in presets.plugins()}
    )
    return updates + panel_support_updates(support) + tuned_panel_updates(*tuned.availability(entry))


def tuned_changed(model: str, on: bool, speedup: float, *, registry: ModelRegistry) -> list[Any]:
    """The tuned panel's note (what the speed picks) and, when switched on, the plan's steps and guidance
    in the steps and guidance sliders (the runs use them whatever the sliders say)."""
    entry = registry.get(model) if model else None
    plan, reason = tuned.availability(entry)
    if plan is None or not on:
        return [tuned_note(plan, reason), gr.update(), gr.update()]
    steps, scale = tuned.full_steps(plan, 0), plan.target.get("guidance_scale")
    return [
        tuned_note(plan, None, on=True, speedup=speedup),
        gr.update(value=steps) if steps else gr.update(),
        gr.update() if scale is None else gr.update(value=float(scale)),
    ]


def load_custom(source: str, *, registry: ModelRegistry) -> tuple[Any, str]:
    """Add a hub id or local pipeline folder to the registry and select it."""
    entry = registry.add_custom(source)
    return gr.update(choices=registry.choices(), value=entry.name), ""


def run_generation(
    model: str,
    prompt: str,
    seed: float | None,
    steps: int,
    guidance: float,
    size: int | None,
    batch: int,
    frames: int | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's idiom; positional, or Gradio never fills it in)
    *plugin_values: Any,
    registry: ModelRegistry,
) -> tuple[Any, ...]:
    """Baseline vs accelerated generation for the UI: status, images, GIFs, metrics and the accel summary.

    ``plugin_values``: the plugin panels' values, then ``tuned, tuned_speedup``
    (see :func:`.plugin_panels.split_inputs`).
    """
    plugins, use_plan, speedup = split_inputs(list(plugin_values))
    request = GenerationRequest(
        model=model,
        prompt=prompt,
        seed=_none_or(seed),
        steps=steps,
        guidance=guidance,
        size=size or None,
        batch=batch,
        frames=frames or None,
        plugins=plugins,
        tuned=use_plan,
        tuned_speedup=speedup,
    )
    result = generate(registry, request, progress=lambda f, text: progress(f, desc=text))
    metrics = result.metrics()
    summary = result.accelerated.summary or {"attached": False}
    gifs = (to_gif(result.baseline.output), to_gif(result.accelerated.output))
    video = result.kind == "video"
    return (
        status_text(result),
        to_display(result.baseline.output),
        to_display(result.accelerated.output),
        gr.update(visible=video),
        gifs[0],
        gifs[1],
        metrics_markdown(result),
        metrics,
        json.dumps(summary, indent=2, default=str),
    )


def generate_json_endpoint(registry: ModelRegistry) -> Callable[..., dict]:
    """The ``generate_json`` API function on ``registry`` (a closure: ``gr.api`` reads its signature and hints)."""

    def generate_json(
        model: str,
        prompt: str,
        seed: int = 0,
        steps: int = 20,
        guidance: float = 2.0,
        size: int = 0,
        batch: int = 1,
        frames: int = 0,
        plugins: str = "{}",
        tuned: bool = False,
        tuned_speedup: float | None = None,
    ) -> dict:
        """Baseline vs accelerated generation; returns the numbers and the accel summary as JSON.

        ``plugins``: a JSON object ``{"adaptive_guidance": {"threshold": 0.99}, ...}`` (keys: deepcache,
        block_cache, adaptive_guidance, ras, sparse_attention; missing fields take the "balanced" preset).
        ``tuned``: run the model's tuned plan (``accel tune``) at ``tuned_speedup`` (x fewer denoiser
        FLOPs, inside the plan's range) instead of ``plugins``; the plan sets the steps (the baseline
        runs its full step count) and the guidance. The numbers' ``tuned`` entry says what ran.
        """
        if isinstance(plugins, str) and len(plugins) > MAX_PLUGINS_JSON:
            raise AppError(f"plugins holds {len(plugins):,} characters; the limit is {MAX_PLUGINS_JSON:,}")
        try:
            parsed = (
                parse_json(plugins, "plugins") if isinstance(plugins, str) and plugins.strip() else (plugins or {})
            )
        except ConfigError as exc:
            raise AppError(str(exc)) from None
        request = GenerationRequest(
            model=model,
            prompt=prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            size=size or None,
            batch=batch,
            frames=frames or None,
            plugins=parsed,
            tuned=tuned,
            tuned_speedup=tuned_speedup,
        )
        result = generate(registry, request)
        return {**result.metrics(), "summary": json.loads(json.dumps(result.accelerated.summary, default=str))}

    return generate_json


# ------------------------------------------------------------------------------ formatting
def status_text(result: GenerationResult) -> str:
    """The status line: what ran (model, steps, seed, size, batch, frames, and the tuned plan's setting)."""
    m = result.metrics()
    text = f"Done: {m['model']}, {m['steps']} steps, seed {m['seed']}, {m['size']} px, batch {m['batch']}"
    if result.kind == "video":
        text += f", {m['frames']} frames (each row of the strip is one video)"
    if result.tuned is not None:
        text += (
            f"; accelerated: {m['accelerated_steps']} steps, both at guidance {m['guidance']:g} (the plan's); "
            + result.tuned.status()
        )
    return text


def _fmt_seconds(value: float) -> str:
    """Milliseconds under a second, seconds above."""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _fmt_nfe(value: Any) -> str:
    """An NFE count, or "n/a"."""
    if value is None:
        return "n/a"
    return f"{value:g}"


def metrics_markdown(result: GenerationResult) -> str:
    """The baseline-vs-accelerated table (wall time, speedup, NFEs, PSNR, SSIM) as Markdown."""
    m = result.metrics()
    psnr = m["psnr"]
    psnr_text = "∞ (identical)" if psnr == "inf" else ("n/a" if psnr is None else f"{psnr:.2f} dB")
    ssim = "n/a" if m["ssim"] is None else f"{m['ssim']:.4f}"
    speedup = "n/a" if m["speedup"] is None else f"**{m['speedup']:.2f}×**"
    return "\n".join(
        [
            _what_ran(result),
            "",
            "| | baseline | accelerated |",
            "|---|---|---|",
            f"| steps | {m['steps']} | {m['accelerated_steps']} |",
            f"| wall time | {_fmt_seconds(result.baseline.seconds)} | {_fmt_seconds(result.accelerated.seconds)} |",
            f"| speedup | 1.00× | {speedup} |",
            (
                f"| NFEs (denoiser evaluations per sample) | {_fmt_nfe(m['baseline_nfe'])} "
                f"| {_fmt_nfe(m['accelerated_nfe'])} |"
            ),
            f"| PSNR to baseline | – | {psnr_text} |",
            f"| SSIM to baseline | – | {ssim} |",
        ]
    )


def _what_ran(result: GenerationResult) -> str:
    """The line above the table: the plugins, or the tuned plan's setting with what it promised."""
    m = result.metrics()
    if result.tuned is None:
        plugins = ", ".join(f"`{p}`" for p in m["plugins"]) or "none (accelerated = baseline)"
        return f"**plugins:** {plugins}"
    t = m["tuned"]
    return (
        f"**tuned plan:** `{t['setting']}` ({tuned.PANELS_NOT_USED})  \n"
        f"{t['num_inference_steps']} steps; validated PSNR {t['psnr']:.2f} dB (held-out prompts), "
        f"{t['speedup']:.2f}× fewer denoiser FLOPs promised (asked for at least {t['requested_speedup']:g}×); "
        f"guidance {m['guidance']:g} as tuned"
    )


def _model_markdown(entry: ModelEntry, adapter_error: str | None) -> str:
    """One model's description: where it comes from, its pipeline class and accel family (or why not)."""
    if not entry.available:
        return f"**{entry.name}** is unavailable: {entry.reason}"
    where = {"builtin": "built-in", "injected": "provided to the app", "custom": "loaded by hub id / path"}
    text = f"**{entry.name}** ({where.get(entry.source, entry.source)}): {entry.title}"
    if entry.loaded:
        adapter = entry.adapter()
        family = (
            f"accel family `{adapter.family}` ({adapter.kind})" if adapter else f"no accel adapter: {adapter_error}"
        )
        text += f"  \n{type(entry.pipe).__name__}, {entry.kind}, {family}"
    return text


def _none_or(value: Any) -> Any:
    """0 for a missing or NaN seed, else the value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0
    return value
