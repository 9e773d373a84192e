"""The Gradio Blocks of ``accel demo``: the generation, curves and vision tabs.

:func:`build_app` puts one tab per module together: :mod:`.generate_tab` (with :mod:`.plugin_panels`
and :mod:`.generate_handlers`), :mod:`.curves_tab` and :mod:`.vision_tab`. Each wires widgets to the
Gradio-free logic in :mod:`.generation`, :mod:`.curves` and :mod:`.vision`; every handler turns a
user-fixable problem into a ``gr.Error`` with a readable message, and anything unexpected into a
one-line error (the traceback goes to the server log; see :mod:`.handlers`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import gradio as gr

from . import vision
from .curves_tab import build_curves_tab, wire_curves_tab
from .generate_tab import build_generate_tab, wire_generate_tab
from .models import Limits, ModelRegistry
from .plugin_panels import plugin_inputs  # noqa: F401  (re-exported: API clients build "generate" inputs)
from .vision_tab import build_vision_tab, wire_vision_tab

#: Inputs of the "generate" endpoint before the plugin panels, in order.
BASE_INPUTS = ("model", "prompt", "seed", "steps", "guidance", "size", "batch", "frames")
#: Inputs of the "generate" endpoint after the plugin panels: the tuned preset (use the model's plan,
#: and its speed in x fewer denoiser FLOPs). :func:`plugin_inputs` builds panels and these together.
TUNED_INPUTS = ("tuned", "tuned_speedup")

CSS = """
.accel-metrics table { width: 100%; }
.accel-metrics td, .accel-metrics th { padding: 4px 10px !important; }
.accel-result img { image-rendering: pixelated; }
.accel-sample img { image-rendering: pixelated; }
.accel-sample .grid-container { --grid-cols: 8 !important; }  /* small tiles even for a few samples */
footer { display: none !important; }
"""

INTRO = """# accel: training-free acceleration, measured
Pick a model and a prompt, switch on plugins (or the model's tuned plan), and press **Generate**: the
app runs the plain pipeline (baseline) and the accelerated one with the same seed, and shows both with
their wall time, NFEs and fidelity. Curves of whole `accel eval` sweeps are in **Curves**; RePaViT on
a ViT classifier in **Vision**."""


# ------------------------------------------------------------------------------ the app
def build_app(
    models: dict[str, Any] | None = None,
    runs_root: str = "runs",
    *,
    limits: Limits | None = None,
    allow_custom_models: bool = True,
    runs_root_editable: bool = True,
    max_concurrent: int = 2,
    queue_size: int = 32,
    vision_models: vision.VisionModels | None = None,
    registry: ModelRegistry | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (queued, not launched).

    Args:
        models: ``{name: pipeline or accel.app.ModelSpec}`` to offer instead of the built-in models
            (tests pass tiny pipelines here); None: the built-in models.
        runs_root: the folder of ``accel eval`` runs for the curves tab. It is pinned: the tab reads
            nothing outside it (real paths, so a symlink out of it is not followed).
        limits: bounds on one request (steps, size, batch, prompt length, ...).
        allow_custom_models: show the "your own model" box (hub id or local path).
        runs_root_editable: let users type another folder in the page, which must lie inside
            ``runs_root``; False: the box is read-only and every request reads ``runs_root`` itself.
        max_concurrent: generations/classifications running at once (more wait in the queue); two
            requests on the same model always run one after the other.
        queue_size: requests waiting at most; more are refused with a "queue full" message.
        vision_models: the ViT pair of the vision tab (default: built-in ``vit-digits``).
        device, dtype: where and in what precision the registry loads models (see :mod:`accel.devices`;
            default: CUDA in bfloat16 when available, else the CPU in float32).
    """
    limits = limits or Limits()
    registry = registry or ModelRegistry(
        models, limits=limits, allow_custom=allow_custom_models, device=device, dtype=dtype
    )
    vision_models = vision_models or vision.VisionModels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # css in the constructor is still honoured by launch()
        demo = gr.Blocks(title="accel demo", css=CSS, delete_cache=(3600, 3600))
    with demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                generate_tab = build_generate_tab(registry, limits, allow_custom_models)
            with gr.Tab("Curves", id="curves"):
                curves_tab = build_curves_tab(runs_root, runs_root_editable)
            with gr.Tab("Vision (RePaViT)", id="vision"):
                vision_tab = build_vision_tab()
        wire_generate_tab(demo, generate_tab, registry, max_concurrent)
        wire_curves_tab(demo, curves_tab)
        wire_vision_tab(demo, vision_tab, vision_models, max_concurrent)
    demo.queue(max_size=queue_size, default_concurrency_limit=max_concurrent)
    demo.accel_registry = registry  # for scripts and tests
    return demo


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs: Any) -> Any:
    """Build the demo with the built-in models and serve it (blocks until interrupted).

    ``kwargs`` go to :func:`build_app` (e.g. ``runs_root``, ``runs_root_editable``, ``allow_custom_models``). Set
    ``ACCEL_DEMO_CUSTOM_MODELS=0`` to hide the "your own model" box (e.g. for a public ``share`` link).
    """
    if os.environ.get("ACCEL_DEMO_CUSTOM_MODELS", "").strip() in ("0", "false", "no"):
        kwargs.setdefault("allow_custom_models", False)
    demo = build_app(**kwargs)
    return demo.launch(server_name=host, server_port=port, share=share, css=CSS, show_error=False)
