"""The ``accel demo`` Gradio app: generation (baseline vs accelerated), curves of ``accel eval`` runs,
and RePaViT on a ViT classifier.

    from accel.app import build_app, launch
    launch(host="127.0.0.1", port=7860)                       # built-in models
    demo = build_app(models={"tiny": tiny_text_pipeline("unet")}, runs_root="runs")  # tests

Modules: :mod:`.app` (the Blocks: one tab each from :mod:`.generate_tab`, :mod:`.curves_tab`,
:mod:`.vision_tab`; handlers in :mod:`.generate_handlers`, :mod:`.handlers`, :mod:`.plugin_panels`),
:mod:`.generation`, :mod:`.curves`, :mod:`.vision` (logic without Gradio), :mod:`.presets` (plugin
settings), :mod:`.tuned` (the "tuned plan" preset), :mod:`.models` (thread-safe model registry).
"""

from __future__ import annotations

from typing import Any

from .models import AppError, Limits, ModelRegistry, ModelSpec

__all__ = ["AppError", "Limits", "ModelRegistry", "ModelSpec", "build_app", "launch"]


def build_app(*args: Any, **kwargs: Any) -> Any:
    """See :func:`accel.app.app.build_app` (imports Gradio on first use)."""
    from .app import build_app as _build

    return _build(*args, **kwargs)


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, **kwargs: Any) -> Any:
    """See :func:`accel.app.app.launch`."""
    from .app import launch as _launch

    return _launch(host=host, port=port, share=share, **kwargs)
