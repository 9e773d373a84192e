"""The "Generate" tab: model and settings, the tuned plan and plugin panels, and baseline vs accelerated results.

Its endpoints: ``select_model``, ``load_model`` (with custom models), ``generate`` (the UI's inputs,
see :data:`.app.BASE_INPUTS`, :func:`.plugin_panels.plugin_inputs` and :data:`.app.TUNED_INPUTS`)
and ``generate_json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from .generate_handlers import generate_json_endpoint, load_custom, model_changed, run_generation, tuned_changed
from .handlers import errors_readable, handler
from .models import Limits, ModelRegistry
from .plugin_panels import TunedPanel, build_plugin_panels, build_tuned_panel


@dataclass
class _Settings:
    """The left column: model, prompt and generation settings (custom-model box: None when hidden)."""

    model: gr.Dropdown
    model_info: gr.Markdown
    custom_source: gr.Textbox | None
    custom_button: gr.Button | None
    prompt: gr.Textbox
    example: gr.Dropdown
    seed: gr.Number
    steps: gr.Slider
    guidance: gr.Slider
    size: gr.Slider
    batch: gr.Slider
    frames: gr.Slider
    run_button: gr.Button

    def request_inputs(self) -> list[Any]:
        """The "generate" inputs before the plugin panels (:data:`.app.BASE_INPUTS`)."""
        return [self.model, self.prompt, self.seed, self.steps, self.guidance, self.size, self.batch, self.frames]


@dataclass
class _Results:
    """What a generation fills in, in the order :func:`.generate_handlers.run_generation` returns it."""

    status: gr.Markdown
    baseline_image: gr.Image
    accelerated_image: gr.Image
    gif_row: gr.Row
    baseline_gif: gr.Image
    accelerated_gif: gr.Image
    metrics_md: gr.Markdown
    metrics_json: gr.JSON
    summary_code: gr.Code

    def outputs(self) -> list[Any]:
        """The components as a list of event outputs."""
        return [
            self.status,
            self.baseline_image,
            self.accelerated_image,
            self.gif_row,
            self.baseline_gif,
            self.accelerated_gif,
            self.metrics_md,
            self.metrics_json,
            self.summary_code,
        ]


@dataclass
class GenerateTab:
    """The tab's components that its events read or update."""

    settings: _Settings
    plugin_components: list[Any]  # per plugin: enabled, preset, *fields
    panel_updates: list[Any]  # per plugin: accordion, note, enable box
    tuned: TunedPanel
    results: _Results

    def generate_inputs(self) -> list[Any]:
        """The "generate" inputs: base inputs, plugin panels, then the tuned box and speed."""
        return [*self.settings.request_inputs(), *self.plugin_components, *self.tuned.inputs()]


def build_generate_tab(registry: ModelRegistry, limits: Limits, allow_custom_models: bool) -> GenerateTab:
    """Lay out the tab's components inside the current ``gr.Tab`` (events: :func:`wire_generate_tab`)."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=320):
            settings = _settings_column(registry, limits, allow_custom_models)
        with gr.Column(scale=5, min_width=320):
            gr.Markdown("### Acceleration plugins")
            tuned = build_tuned_panel()
            plugin_components, panel_updates = build_plugin_panels()
    return GenerateTab(settings, plugin_components, panel_updates, tuned, _results_area())


def wire_generate_tab(demo: gr.Blocks, tab: GenerateTab, registry: ModelRegistry, max_concurrent: int) -> None:
    """Wire the tab's events and its endpoints (the plugin panels wire their own presets)."""
    _wire_model_events(demo, registry, tab)
    _wire_tuned_events(registry, tab)
    _wire_generate_events(registry, tab, max_concurrent)


def _settings_column(registry: ModelRegistry, limits: Limits, allow_custom_models: bool) -> _Settings:
    """The model picker, the optional custom-model box, the prompt and the sliders, and "Generate"."""
    model = gr.Dropdown(
        registry.choices(), value=registry.default_name(), label="Model", allow_custom_value=True, elem_id="model"
    )
    model_info = gr.Markdown(elem_id="model-info")
    custom_source, custom_button = _custom_model_box(limits) if allow_custom_models else (None, None)
    prompt = gr.Textbox(
        label="Prompt",
        max_lines=2,
        max_length=limits.max_prompt_chars,
        placeholder="a handwritten 7",
        elem_id="prompt",
    )
    example = gr.Dropdown(label="Example prompts (the model's built-in set)", choices=[], value=None, interactive=True)
    with gr.Row():
        seed = gr.Number(value=0, label="Seed", precision=0, minimum=0, maximum=limits.max_seed)
        steps = gr.Slider(1, limits.max_steps, value=20, step=1, label="Steps", elem_id="steps")
        guidance = gr.Slider(0, limits.max_guidance, value=2.0, step=0.5, label="Guidance")
    with gr.Row():
        size = gr.Slider(8, limits.max_size_builtin, value=32, step=8, label="Size (px)")
        batch = gr.Slider(1, limits.max_batch, value=1, step=1, label="Batch")
        frames = gr.Slider(1, limits.max_frames, value=9, step=1, label="Frames (video)", visible=False)
    run_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
    return _Settings(
        model,
        model_info,
        custom_source,
        custom_button,
        prompt,
        example,
        seed,
        steps,
        guidance,
        size,
        batch,
        frames,
        run_button,
    )


def _custom_model_box(limits: Limits) -> tuple[gr.Textbox, gr.Button]:
    """The "your own model" accordion: a hub id / folder box and its "Load model" button."""
    with gr.Accordion("Your own model (hub id or local path)", open=False):
        custom_source = gr.Textbox(
            label="Hugging Face hub id or local diffusers pipeline folder",
            placeholder="org/name or /path/to/pipeline",
            max_lines=1,
        )
        custom_button = gr.Button("Load model", size="sm")
        gr.Markdown(
            "Loaded with `DiffusionPipeline.from_pretrained` (safetensors only, no "
            f"remote code); up to {limits.max_size_custom} px. Needs a GPU for "
            "real-size models."
        )
    return custom_source, custom_button


def _results_area() -> _Results:
    """The status line, the two images (and GIFs for videos), the metrics table and the raw numbers."""
    status = gr.Markdown("Press **Generate** to compare the baseline with the accelerated run.", elem_id="status")
    with gr.Row(equal_height=True):
        baseline_image = gr.Image(
            label="baseline",
            type="pil",
            interactive=False,
            height=260,
            format="png",
            elem_classes=["accel-result"],
            elem_id="baseline-image",
        )
        accelerated_image = gr.Image(
            label="accelerated",
            type="pil",
            interactive=False,
            height=260,
            format="png",
            elem_classes=["accel-result"],
            elem_id="accelerated-image",
        )
    with gr.Row(visible=False) as gif_row:
        baseline_gif = gr.Image(
            label="baseline (animated)", type="filepath", interactive=False, height=200, elem_classes=["accel-result"]
        )
        accelerated_gif = gr.Image(
            label="accelerated (animated)",
            type="filepath",
            interactive=False,
            height=200,
            elem_classes=["accel-result"],
        )
    metrics_md = gr.Markdown(elem_classes=["accel-metrics"], elem_id="metrics")
    with gr.Accordion("Numbers (JSON) and accel.summary of the accelerated run", open=False):
        metrics_json = gr.JSON(label="numbers")
        summary_code = gr.Code(label="accel.summary(pipe)", language="json")
    return _Results(
        status,
        baseline_image,
        accelerated_image,
        gif_row,
        baseline_gif,
        accelerated_gif,
        metrics_md,
        metrics_json,
        summary_code,
    )


def _wire_model_events(demo: gr.Blocks, registry: ModelRegistry, tab: GenerateTab) -> None:
    """Model selection (and page load) updates the settings and panels; examples fill the prompt; custom models."""
    settings = tab.settings
    model_outputs = [
        settings.model_info,
        settings.example,
        settings.size,
        settings.frames,
        *tab.panel_updates,
        *tab.tuned.updatables(),
    ]
    settings.model.change(
        handler(model_changed, registry=registry), settings.model, model_outputs, api_name="select_model"
    )
    demo.load(handler(model_changed, registry=registry), settings.model, model_outputs, api_visibility="private")
    settings.example.input(
        lambda text: text or gr.update(), settings.example, settings.prompt, api_visibility="private"
    )
    if settings.custom_source is not None:
        load_event = {
            "fn": handler(load_custom, registry=registry),
            "inputs": settings.custom_source,
            "outputs": [settings.model, tab.results.status],
            "concurrency_limit": 1,
            "concurrency_id": "load",
        }
        settings.custom_button.click(**load_event, api_name="load_model")
        settings.custom_source.submit(**load_event, api_visibility="private")


def _wire_tuned_events(registry: ModelRegistry, tab: GenerateTab) -> None:
    """Switching the tuned plan on, or moving its speed: the note says what the speed picks, and the
    steps and guidance sliders show the plan's."""
    panel, settings = tab.tuned, tab.settings
    event = {
        "fn": handler(tuned_changed, registry=registry),
        "inputs": [settings.model, panel.enabled, panel.speed],
        "outputs": [panel.note, settings.steps, settings.guidance],
        "api_visibility": "private",
    }
    panel.enabled.input(**event)
    panel.speed.release(**event)


def _wire_generate_events(registry: ModelRegistry, tab: GenerateTab, max_concurrent: int) -> None:
    """The Generate button (and Enter in the prompt) runs the comparison; ``generate_json`` does it for API clients."""
    settings, results = tab.settings, tab.results
    inputs = tab.generate_inputs()
    settings.run_button.click(
        handler(run_generation, registry=registry),
        inputs,
        results.outputs(),
        api_name="generate",
        concurrency_limit=max_concurrent,
        concurrency_id="compute",
    )
    settings.prompt.submit(
        handler(run_generation, registry=registry),
        inputs,
        results.outputs(),
        api_visibility="private",
        concurrency_limit=max_concurrent,
        concurrency_id="compute",
    )
    gr.api(
        errors_readable(generate_json_endpoint(registry)),
        api_name="generate_json",
        concurrency_limit=max_concurrent,
        concurrency_id="compute",
    )
