"""The Gradio Blocks of ``accel demo``: the generation, curves and vision tabs.

:func:`build_app` wires widgets to the Gradio-free logic in :mod:`.generation`, :mod:`.curves` and
:mod:`.vision`; every handler turns a user-fixable problem into a ``gr.Error`` with a readable
message, and anything unexpected into a one-line error (the traceback goes to the server log).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import warnings
from typing import Any, Callable

import gradio as gr

from . import curves, presets, vision
from .generation import GenerationRequest, GenerationResult, generate, to_display, to_gif
from .models import AppError, Limits, ModelRegistry, one_line

log = logging.getLogger(__name__)

#: Inputs of the "generate" endpoint before the plugin panels, in order.
BASE_INPUTS = ("model", "prompt", "seed", "steps", "guidance", "size", "batch", "frames")

CSS = """
.accel-metrics table { width: 100%; }
.accel-metrics td, .accel-metrics th { padding: 4px 10px !important; }
.accel-result img { image-rendering: pixelated; }
.accel-sample img { image-rendering: pixelated; }
.accel-sample .grid-container { --grid-cols: 8 !important; }  /* small tiles even for a few samples */
footer { display: none !important; }
"""

INTRO = """# accel: training-free acceleration, measured
Pick a model and a prompt, switch on plugins, and press **Generate**: the app runs the plain pipeline
(baseline) and the accelerated one with the same seed, and shows both with their wall time, NFEs and
fidelity. Curves of whole `accel eval` sweeps are in **Curves**; RePaViT on a ViT classifier in **Vision**."""


def plugin_inputs(plugins: dict[str, dict[str, Any]] | None = None, presets_: dict[str, str] | None = None) -> list[Any]:
    """The plugin-panel part of the "generate" endpoint's inputs, for API clients.

    ``plugins``: ``{key: field values}`` of the enabled plugins (missing fields: the preset's);
    every other plugin is disabled. Order: per plugin of :data:`presets.PLUGINS`,
    ``enabled, preset, *fields``.
    """
    plugins = plugins or {}
    out: list[Any] = []
    for spec in presets.PLUGINS:
        preset = (presets_ or {}).get(spec.key, "balanced")
        values = spec.defaults(preset if preset in spec.presets else "balanced")
        values.update(plugins.get(spec.key, {}))
        out += [spec.key in plugins, preset] + [values[f.name] for f in spec.fields]
    return out


def _split_plugin_values(values: list[Any]) -> dict[str, dict[str, Any]]:
    enabled: dict[str, dict[str, Any]] = {}
    i = 0
    for spec in presets.PLUGINS:
        on, _preset = values[i], values[i + 1]
        fields = values[i + 2:i + 2 + len(spec.fields)]
        i += 2 + len(spec.fields)
        if on:
            enabled[spec.key] = {f.name: v for f, v in zip(spec.fields, fields)}
    if i != len(values):
        raise AppError(f"expected {i} plugin values, got {len(values)}")
    return enabled


def _errors_readable(fn: Callable) -> Callable:
    """Turn exceptions into ``gr.Error`` with a readable message (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except AppError as exc:
            raise gr.Error(str(exc), title="Cannot do that") from None
        except Exception as exc:  # noqa: BLE001
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"unexpected error: {one_line(exc)}", title="Error") from None
    return wrapper


# ------------------------------------------------------------------------------ formatting
def _fmt_seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _fmt_nfe(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}"


def metrics_markdown(result: GenerationResult) -> str:
    m = result.metrics()
    psnr = m["psnr"]
    psnr_text = "∞ (identical)" if psnr == "inf" else ("n/a" if psnr is None else f"{psnr:.2f} dB")
    ssim = "n/a" if m["ssim"] is None else f"{m['ssim']:.4f}"
    speedup = "n/a" if m["speedup"] is None else f"**{m['speedup']:.2f}×**"
    plugins = ", ".join(f"`{p}`" for p in m["plugins"]) or "none (accelerated = baseline)"
    return "\n".join([
        f"**plugins:** {plugins}",
        "",
        "| | baseline | accelerated |",
        "|---|---|---|",
        f"| wall time | {_fmt_seconds(result.baseline.seconds)} | {_fmt_seconds(result.accelerated.seconds)} |",
        f"| speedup | 1.00× | {speedup} |",
        f"| NFEs (denoiser evaluations per sample) | {_fmt_nfe(m['baseline_nfe'])} | {_fmt_nfe(m['accelerated_nfe'])} |",
        f"| PSNR to baseline | – | {psnr_text} |",
        f"| SSIM to baseline | – | {ssim} |",
    ])


def _model_markdown(entry: Any, adapter_error: str | None) -> str:
    if not entry.available:
        return f"**{entry.name}** is unavailable: {entry.reason}"
    where = {"builtin": "built-in", "injected": "provided to the app", "custom": "loaded by hub id / path"}
    text = f"**{entry.name}** ({where.get(entry.source, entry.source)}): {entry.title}"
    if entry.loaded:
        adapter = entry.adapter()
        family = f"accel family `{adapter.family}` ({adapter.kind})" if adapter else f"no accel adapter: {adapter_error}"
        text += f"  \n{type(entry.pipe).__name__}, {entry.kind}, {family}"
    return text


# ------------------------------------------------------------------------------ the app
def build_app(models: dict[str, Any] | None = None, runs_root: str = "runs", *, limits: Limits | None = None,
              allow_custom_models: bool = True, runs_root_editable: bool = True, max_concurrent: int = 2,
              queue_size: int = 32, vision_models: vision.VisionModels | None = None,
              registry: ModelRegistry | None = None) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (queued, not launched).

    Args:
        models: ``{name: pipeline or accel.app.ModelSpec}`` to offer instead of the built-in models
            (tests pass tiny pipelines here); None: the built-in models.
        runs_root: default folder of ``accel eval`` runs for the curves tab.
        limits: bounds on one request (steps, size, batch, prompt length, ...).
        allow_custom_models: show the "your own model" box (hub id or local path).
        runs_root_editable: let users change the runs root in the page.
        max_concurrent: generations/classifications running at once (more wait in the queue); two
            requests on the same model always run one after the other.
        queue_size: requests waiting at most; more are refused with a "queue full" message.
        vision_models: the ViT pair of the vision tab (default: built-in ``vit-digits``).
    """
    limits = limits or Limits()
    registry = registry or ModelRegistry(models, limits=limits, allow_custom=allow_custom_models)
    vision_models = vision_models or vision.VisionModels()
    default_model = registry.default_name()

    # -------------------------------------------------------------- handlers: generation
    def model_changed(name: str):
        entry = registry.get(name) if name else None
        updates: list[Any] = []
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
        updates += [
            info,
            gr.update(choices=examples, value=None, visible=bool(examples)),
            gr.update(maximum=entry.max_size, value=entry.default_size()) if loaded else gr.update(),
            gr.update(visible=True, value=entry.default_frames()) if video else gr.update(visible=False),
        ]
        support = presets.support(entry.adapter()) if loaded else {
            spec.key: "the model is not available" for spec in presets.PLUGINS}
        for spec in presets.PLUGINS:
            reason = support[spec.key]
            if reason is None:
                updates += [gr.update(label=f"{spec.title}: available for this model"),
                            f"{spec.blurb}", gr.update(interactive=True)]
            else:
                updates += [gr.update(label=f"{spec.title}: not for this model"),
                            f"{spec.blurb}  \n*Not available for this model:* {reason}",
                            gr.update(interactive=False, value=False)]
        return updates

    def load_custom(source: str):
        entry = registry.add_custom(source)
        return gr.update(choices=registry.choices(), value=entry.name), ""

    def run_generation(model, prompt, seed, steps, guidance, size, batch, frames, *plugin_values,
                       progress=gr.Progress()):
        plugins = _split_plugin_values(list(plugin_values))
        request = GenerationRequest(model=model, prompt=prompt, seed=_none_or(seed), steps=steps, guidance=guidance,
                                    size=size or None, batch=batch, frames=frames or None, plugins=plugins)
        result = generate(registry, request, progress=lambda f, text: progress(f, desc=text))
        metrics = result.metrics()
        summary = result.accelerated.summary or {"attached": False}
        gifs = (to_gif(result.baseline.output), to_gif(result.accelerated.output))
        video = result.kind == "video"
        status = (f"Done: {metrics['model']}, {metrics['steps']} steps, seed {metrics['seed']}, "
                  f"{metrics['size']} px, batch {metrics['batch']}"
                  + (f", {metrics['frames']} frames (each row of the strip is one video)" if video else ""))
        return (status, to_display(result.baseline.output), to_display(result.accelerated.output),
                gr.update(visible=video), gifs[0], gifs[1], metrics_markdown(result), metrics,
                json.dumps(summary, indent=2, default=str))

    def generate_json(model: str, prompt: str, seed: int = 0, steps: int = 20, guidance: float = 2.0,
                      size: int = 0, batch: int = 1, frames: int = 0, plugins: str = "{}") -> dict:
        """Baseline vs accelerated generation; returns the numbers and the accel summary as JSON.

        ``plugins``: a JSON object ``{"adaptive_guidance": {"threshold": 0.99}, ...}`` (keys: deepcache,
        block_cache, adaptive_guidance, ras, sparse_attention; missing fields take the "balanced" preset).
        """
        try:
            parsed = json.loads(plugins) if isinstance(plugins, str) and plugins.strip() else (plugins or {})
        except json.JSONDecodeError as exc:
            raise AppError(f"plugins is not valid JSON: {exc}") from None
        request = GenerationRequest(model=model, prompt=prompt, seed=seed, steps=steps, guidance=guidance,
                                    size=size or None, batch=batch, frames=frames or None, plugins=parsed)
        result = generate(registry, request)
        return {**result.metrics(), "summary": json.loads(json.dumps(result.accelerated.summary, default=str))}

    # -------------------------------------------------------------- handlers: curves
    def refresh_runs(root: str):
        runs = curves.list_runs(root)
        if not runs:
            note = (f"No finished `accel eval` runs under `{root}` (folders with a summary.json). "
                    "Make one with `accel eval --out " + (root or "runs") + "`.")
        else:
            note = f"{len(runs)} run(s) under `{root}`."
        return gr.update(choices=runs, value=runs[0] if runs else None), note

    def open_run(root: str, name: str):
        if not name:
            return None, gr.update(value=None), gr.update(choices=[], value=None), ""
        path = curves.run_dir(root, name)
        rows = curves.load_rows(path)
        headers, data = curves.table(rows)
        configs = [r["config"] for r in rows]
        first = next((r["config"] for r in rows if r.get("kind") == "method"), configs[0] if configs else None)
        image = curves.pareto_image(path)
        note = f"`{name}`: {len(rows)} configs" + ("" if image is not None else " (no pareto.png in this run)")
        return image, gr.update(value={"headers": headers, "data": data}), gr.update(choices=configs, value=first), note

    def select_row(data: Any, evt: gr.SelectData):
        if evt.row_value:
            return gr.update(value=str(evt.row_value[0]))
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return gr.update(value=str(data["config"].iloc[row])) if hasattr(data, "iloc") else gr.update()

    def show_samples(root: str, name: str, config: str):
        if not (name and config):
            return []
        return curves.samples(curves.run_dir(root, name), config)

    # -------------------------------------------------------------- handlers: vision
    def vision_status() -> str:
        ok, message = vision_models.status()
        if not ok:
            return f"**Vision tab unavailable:** {message}."
        checkpoint = vision_models.checkpoint()
        which = (f"fine-tuned RePaViT checkpoint `{os.path.relpath(checkpoint)}`" if checkpoint else
                 "no fine-tuned RePaViT checkpoint found: the RePaViT model is converted on the fly and "
                 "**not fine-tuned** (expect lower accuracy)")
        return f"Original: {message}. RePaViT: {which}."

    def classify(image: Any, truth: int | None = None, inverted: bool = False):
        result = vision_models.classify(image)
        o, r = result["original"], result["repavit"]
        rows = ["| | original ViT | RePaViT |", "|---|---|---|",
                f"| prediction | **{o['prediction']}** ({o['confidence']:.1%}) | **{r['prediction']}** ({r['confidence']:.1%}) |",
                f"| latency (batch 1, median) | {o['latency_ms']:.2f} ms | {r['latency_ms']:.2f} ms |",
                f"| speedup | 1.00× | {result['speedup']:.2f}× |"]
        notes = [f"RePaViT: {result['description']}."]
        if truth is not None:
            notes.append(f"True label: **{truth}**.")
        if inverted:
            notes.append("The picture was mostly light, so it was inverted (the digits are light on dark).")
        return (vision.to_preview(image), o["probabilities"], r["probabilities"],
                "\n".join(rows) + "\n\n" + " ".join(notes), result)

    def classify_heldout(index: Any):
        try:
            i = int(index)
        except (TypeError, ValueError):
            raise AppError(f"the held-out index must be a whole number, got {index!r}") from None
        image, label = vision.heldout_digit(i)
        size = vision_models.input_size()
        if image.shape[-1] != size:
            import torch.nn.functional as F

            image = F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        return classify(image, truth=label)

    def classify_upload(picture: Any):
        image, inverted = vision.prepare_upload(picture, vision_models.input_size())
        return classify(image, inverted=inverted)

    # -------------------------------------------------------------- layout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # css in the constructor is still honoured by launch()
        demo = gr.Blocks(title="accel demo", css=CSS, delete_cache=(3600, 3600))
    with demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=4, min_width=320):
                        model = gr.Dropdown(registry.choices(), value=default_model, label="Model", allow_custom_value=True,
                                            elem_id="model")
                        model_info = gr.Markdown(elem_id="model-info")
                        if allow_custom_models:
                            with gr.Accordion("Your own model (hub id or local path)", open=False):
                                custom_source = gr.Textbox(
                                    label="Hugging Face hub id or local diffusers pipeline folder",
                                    placeholder="org/name or /path/to/pipeline", max_lines=1)
                                custom_button = gr.Button("Load model", size="sm")
                                gr.Markdown("Loaded with `DiffusionPipeline.from_pretrained` (safetensors only, no "
                                            f"remote code); up to {limits.max_size_custom} px. Needs a GPU for "
                                            "real-size models.")
                        prompt = gr.Textbox(label="Prompt", max_lines=2, max_length=limits.max_prompt_chars,
                                            placeholder="a handwritten 7", elem_id="prompt")
                        example = gr.Dropdown(label="Example prompts (the model's built-in set)", choices=[],
                                              value=None, interactive=True)
                        with gr.Row():
                            seed = gr.Number(value=0, label="Seed", precision=0, minimum=0, maximum=limits.max_seed)
                            steps = gr.Slider(1, limits.max_steps, value=20, step=1, label="Steps", elem_id="steps")
                            guidance = gr.Slider(0, limits.max_guidance, value=2.0, step=0.5, label="Guidance")
                        with gr.Row():
                            size = gr.Slider(8, limits.max_size_builtin, value=32, step=8, label="Size (px)")
                            batch = gr.Slider(1, limits.max_batch, value=1, step=1, label="Batch")
                            frames = gr.Slider(1, limits.max_frames, value=9, step=1, label="Frames (video)",
                                               visible=False)
                        run_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                    with gr.Column(scale=5, min_width=320):
                        gr.Markdown("### Acceleration plugins")
                        plugin_components: list[Any] = []
                        panel_updates: list[Any] = []
                        for spec in presets.PLUGINS:
                            with gr.Accordion(spec.title, open=False, elem_id=f"panel-{spec.key}") as accordion:
                                note = gr.Markdown(spec.blurb)
                                with gr.Row(equal_height=True):
                                    enabled = gr.Checkbox(label="enable", value=False,
                                                          elem_id=f"use-{spec.key}", scale=2, min_width=160)
                                    preset = gr.Radio(list(presets.PRESET_NAMES) + [presets.CUSTOM], value="balanced",
                                                      label="preset", scale=5, min_width=300)
                                widgets = []
                                values = spec.defaults()
                                for start in range(0, len(spec.fields), 2):  # two settings per row
                                    with gr.Row(equal_height=True):
                                        for field in spec.fields[start:start + 2]:
                                            widgets.append(_field_widget(field, values[field.name]))
                            preset.input(functools.partial(_preset_values, spec), inputs=preset, outputs=widgets,
                                         api_visibility="private")
                            for widget in widgets:
                                widget.input(lambda: presets.CUSTOM, outputs=preset, api_visibility="private")
                            plugin_components += [enabled, preset, *widgets]
                            panel_updates += [accordion, note, enabled]
                status = gr.Markdown("Press **Generate** to compare the baseline with the accelerated run.",
                                     elem_id="status")
                with gr.Row(equal_height=True):
                    baseline_image = gr.Image(label="baseline", type="pil", interactive=False, height=260, format="png",
                                              elem_classes=["accel-result"], elem_id="baseline-image")
                    accelerated_image = gr.Image(label="accelerated", type="pil", interactive=False, height=260, format="png",
                                                 elem_classes=["accel-result"], elem_id="accelerated-image")
                with gr.Row(visible=False) as gif_row:
                    baseline_gif = gr.Image(label="baseline (animated)", type="filepath", interactive=False,
                                            height=200, elem_classes=["accel-result"])
                    accelerated_gif = gr.Image(label="accelerated (animated)", type="filepath", interactive=False,
                                               height=200, elem_classes=["accel-result"])
                metrics_md = gr.Markdown(elem_classes=["accel-metrics"], elem_id="metrics")
                with gr.Accordion("Numbers (JSON) and accel.summary of the accelerated run", open=False):
                    metrics_json = gr.JSON(label="numbers")
                    summary_code = gr.Code(label="accel.summary(pipe)", language="json")

            with gr.Tab("Curves", id="curves"):
                gr.Markdown("Quality-speed curves of finished `accel eval` runs. Click a row of the table (or pick "
                            "a config) to see its samples.")
                with gr.Row():
                    runs_root_box = gr.Textbox(value=runs_root, label="Runs root (accel eval --out)", max_lines=1,
                                               interactive=runs_root_editable, scale=4)
                    refresh_button = gr.Button("Refresh", scale=1)
                    run_choice = gr.Dropdown(label="Run", choices=[], value=None, scale=4)
                curves_note = gr.Markdown()
                pareto = gr.Image(label="Pareto plot (pareto.png)", type="pil", interactive=False, format="png")
                summary_table = gr.Dataframe(label="summary.json (click a row)", interactive=False, wrap=True)
                config_choice = gr.Dropdown(label="Config", choices=[], value=None)
                gallery = gr.Gallery(label="Samples of the config (prompt and seed as captions)", columns=8,
                                     height="auto", object_fit="contain", elem_classes=["accel-sample"], format="png")

            with gr.Tab("Vision (RePaViT)", id="vision"):
                vision_note = gr.Markdown()
                with gr.Row():
                    with gr.Column():
                        upload = gr.Image(label="Upload a digit (data only; resized to the ViT input)", type="pil",
                                          sources=["upload", "clipboard"], height=220)
                        upload_button = gr.Button("Classify the upload")
                        heldout_index = gr.Slider(0, max(0, vision.heldout_count() - 1), value=0, step=1,
                                                  label="Held-out digit #")
                        heldout_button = gr.Button("Classify this held-out digit", variant="primary")
                    with gr.Column():
                        preview = gr.Image(label="Model input", type="pil", interactive=False, height=160, format="png",
                                           elem_classes=["accel-result"])
                        with gr.Row():
                            original_label = gr.Label(label="original ViT", num_top_classes=3)
                            repavit_label = gr.Label(label="RePaViT", num_top_classes=3)
                        vision_md = gr.Markdown(elem_classes=["accel-metrics"])
                        vision_json = gr.JSON(visible=False)

        # ---------------------------------------------------------------- events
        model_outputs = [model_info, example, size, frames, *panel_updates]
        model.change(_errors_readable(model_changed), model, model_outputs, api_name="select_model")
        demo.load(_errors_readable(model_changed), model, model_outputs, api_visibility="private")
        example.input(lambda text: text or gr.update(), example, prompt, api_visibility="private")
        if allow_custom_models:
            load_event = dict(fn=_errors_readable(load_custom), inputs=custom_source, outputs=[model, status],
                              concurrency_limit=1, concurrency_id="load")
            custom_button.click(**load_event, api_name="load_model")
            custom_source.submit(**load_event, api_visibility="private")
        generate_outputs = [status, baseline_image, accelerated_image, gif_row, baseline_gif, accelerated_gif,
                            metrics_md, metrics_json, summary_code]
        run_button.click(_errors_readable(run_generation),
                         [model, prompt, seed, steps, guidance, size, batch, frames, *plugin_components],
                         generate_outputs, api_name="generate", concurrency_limit=max_concurrent,
                         concurrency_id="compute")
        prompt.submit(_errors_readable(run_generation),
                      [model, prompt, seed, steps, guidance, size, batch, frames, *plugin_components],
                      generate_outputs, api_visibility="private", concurrency_limit=max_concurrent,
                      concurrency_id="compute")
        gr.api(_errors_readable(generate_json), api_name="generate_json", concurrency_limit=max_concurrent,
               concurrency_id="compute")

        refresh_button.click(_errors_readable(refresh_runs), runs_root_box, [run_choice, curves_note],
                             api_name="list_runs")
        runs_root_box.submit(_errors_readable(refresh_runs), runs_root_box, [run_choice, curves_note],
                             api_visibility="private")
        demo.load(_errors_readable(refresh_runs), runs_root_box, [run_choice, curves_note], api_visibility="private")
        run_choice.change(_errors_readable(open_run), [runs_root_box, run_choice],
                          [pareto, summary_table, config_choice, curves_note], api_name="open_run")
        summary_table.select(select_row, summary_table, config_choice, api_visibility="private")
        config_choice.change(_errors_readable(show_samples), [runs_root_box, run_choice, config_choice], gallery,
                             api_name="samples")

        demo.load(vision_status, None, vision_note, api_visibility="private")
        vision_outputs = [preview, original_label, repavit_label, vision_md, vision_json]
        heldout_button.click(_errors_readable(classify_heldout), heldout_index, vision_outputs,
                             api_name="classify_heldout", concurrency_limit=max_concurrent, concurrency_id="compute")
        upload_button.click(_errors_readable(classify_upload), upload, vision_outputs, api_name="classify_upload",
                            concurrency_limit=max_concurrent, concurrency_id="compute")

    demo.queue(max_size=queue_size, default_concurrency_limit=max_concurrent)
    demo.accel_registry = registry  # for scripts and tests
    return demo


def _none_or(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0
    return value


def _field_widget(field: presets.Field, value: Any) -> Any:
    if field.kind == "choice":
        return gr.Dropdown(list(field.choices), value=value, label=field.label, info=field.info or None,
                           min_width=200)
    return gr.Slider(field.minimum, field.maximum, value=value, step=field.step, label=field.label,
                     info=field.info or None, min_width=200)


def _preset_values(spec: presets.PluginSpec, preset: str) -> list[Any]:
    if preset not in spec.presets:
        return [gr.update() for _ in spec.fields]
    values = spec.presets[preset]
    return [values[f.name] for f in spec.fields]


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs: Any) -> Any:
    """Build the demo with the built-in models and serve it (blocks until interrupted).

    ``kwargs`` go to :func:`build_app` (e.g. ``runs_root``, ``allow_custom_models``). Set
    ``ACCEL_DEMO_CUSTOM_MODELS=0`` to hide the "your own model" box (e.g. for a public ``share`` link).
    """
    if os.environ.get("ACCEL_DEMO_CUSTOM_MODELS", "").strip() in ("0", "false", "no"):
        kwargs.setdefault("allow_custom_models", False)
    demo = build_app(**kwargs)
    return demo.launch(server_name=host, server_port=port, share=share, css=CSS, show_error=False)
