"""The "Vision (RePaViT)" tab: the original ViT and its RePaViT version on one digit, side by side.

Its endpoints: ``classify_heldout`` and ``classify_upload``; the models and image handling are in :mod:`.vision`.
Handlers take the ViT pair as a keyword-only ``vision_models`` argument (bound with :func:`.handlers.bind`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import vision
from .handlers import bind, handler
from .models import AppError


@dataclass
class VisionTab:
    """The tab's components that its events read or update."""

    vision_note: gr.Markdown
    upload: gr.Image
    upload_button: gr.Button
    heldout_index: gr.Slider
    heldout_button: gr.Button
    outputs: list[Any]  # preview, original label, RePaViT label, comparison table, raw result


def build_vision_tab() -> VisionTab:
    """Lay out the tab's components inside the current ``gr.Tab`` (events: :func:`wire_vision_tab`)."""
    vision_note = gr.Markdown()
    with gr.Row():
        with gr.Column():
            upload = gr.Image(
                label="Upload a digit (data only; resized to the ViT input)",
                type="pil",
                sources=["upload", "clipboard"],
                height=220,
            )
            upload_button = gr.Button("Classify the upload")
            heldout_index = gr.Slider(0, max(0, vision.heldout_count() - 1), value=0, step=1, label="Held-out digit #")
            heldout_button = gr.Button("Classify this held-out digit", variant="primary")
        with gr.Column():
            preview = gr.Image(
                label="Model input",
                type="pil",
                interactive=False,
                height=160,
                format="png",
                elem_classes=["accel-result"],
            )
            with gr.Row():
                original_label = gr.Label(label="original ViT", num_top_classes=3)
                repavit_label = gr.Label(label="RePaViT", num_top_classes=3)
            vision_md = gr.Markdown(elem_classes=["accel-metrics"])
            vision_json = gr.JSON(visible=False)
    return VisionTab(
        vision_note,
        upload,
        upload_button,
        heldout_index,
        heldout_button,
        [preview, original_label, repavit_label, vision_md, vision_json],
    )


def wire_vision_tab(demo: gr.Blocks, tab: VisionTab, vision_models: vision.VisionModels, max_concurrent: int) -> None:
    """Wire the tab's events: the status note on page load, and the two classify buttons."""
    demo.load(bind(vision_status, vision_models=vision_models), None, tab.vision_note, api_visibility="private")
    tab.heldout_button.click(
        handler(classify_heldout, vision_models=vision_models),
        tab.heldout_index,
        tab.outputs,
        api_name="classify_heldout",
        concurrency_limit=max_concurrent,
        concurrency_id="compute",
    )
    tab.upload_button.click(
        handler(classify_upload, vision_models=vision_models),
        tab.upload,
        tab.outputs,
        api_name="classify_upload",
        concurrency_limit=max_concurrent,
        concurrency_id="compute",
    )


def vision_status(*, vision_models: vision.VisionModels) -> str:
    """A note on which models the tab compares (or why it is unavailable)."""
    ok, message = vision_models.status()
    if not ok:
        return f"**Vision tab unavailable:** {message}."
    checkpoint = vision_models.checkpoint()
    which = (
        f"fine-tuned RePaViT checkpoint `{os.path.relpath(checkpoint)}`"
        if checkpoint
        else "no fine-tuned RePaViT checkpoint found: the RePaViT model is converted on the fly and "
        "**not fine-tuned** (expect lower accuracy)"
    )
    return f"Original: {message}. RePaViT: {which}."


def classify_heldout(index: Any, *, vision_models: vision.VisionModels) -> tuple[Any, ...]:
    """Classify held-out digit ``index`` (resized to the ViT input), with its true label."""
    try:
        i = int(index)
    except (TypeError, ValueError):
        raise AppError(f"the held-out index must be a whole number, got {index!r}") from None
    image, label = vision.heldout_digit(i)
    size = vision_models.input_size()
    if image.shape[-1] != size:
        import torch.nn.functional as F

        image = F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return _classify(vision_models, image, truth=label)


def classify_upload(picture: Any, *, vision_models: vision.VisionModels) -> tuple[Any, ...]:
    """Classify an uploaded picture (inverted first when it is mostly light)."""
    image, inverted = vision.prepare_upload(picture, vision_models.input_size())
    return _classify(vision_models, image, inverted=inverted)


def _classify(
    vision_models: vision.VisionModels, image: Any, truth: int | None = None, inverted: bool = False
) -> tuple[Any, ...]:
    """Both models on ``image``: preview, the two label outputs, a comparison table and the raw result."""
    result = vision_models.classify(image)
    o, r = result["original"], result["repavit"]
    rows = [
        "| | original ViT | RePaViT |",
        "|---|---|---|",
        (
            f"| prediction | **{o['prediction']}** ({o['confidence']:.1%}) "
            f"| **{r['prediction']}** ({r['confidence']:.1%}) |"
        ),
        f"| latency (batch 1, median) | {o['latency_ms']:.2f} ms | {r['latency_ms']:.2f} ms |",
        f"| speedup | 1.00× | {result['speedup']:.2f}× |",
    ]
    notes = [f"RePaViT: {result['description']}."]
    if truth is not None:
        notes.append(f"True label: **{truth}**.")
    if inverted:
        notes.append("The picture was mostly light, so it was inverted (the digits are light on dark).")
    return (
        vision.to_preview(image),
        o["probabilities"],
        r["probabilities"],
        "\n".join(rows) + "\n\n" + " ".join(notes),
        result,
    )
