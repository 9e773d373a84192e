"""The plugin panels of the generate tab: the "Tuned plan" panel and one accordion per plugin of
:func:`presets.plugins`.

Each plugin panel has an "enable" box, a preset radio and the plugin's settings; the tuned panel a
"use the tuned plan" box and a speed slider whose range is the selected model's plan (see
:mod:`.tuned`). The "generate" endpoint takes, after :data:`.app.BASE_INPUTS`, per plugin
``enabled, preset, *fields``, then ``tuned, tuned_speedup`` (:data:`.app.TUNED_INPUTS`);
:func:`plugin_inputs` builds them for API clients, :func:`split_inputs` turns them back into
``({key: field values}, tuned, tuned_speedup)``.

A choice field's dropdown holds its choices as strings, also numbers such as the block size ("64"), so
that the values match the API schema Gradio publishes for a dropdown (``"type": "string"``); a tuple
field (sparse attention's neighbourhood kernel, stride, dilation and tile) is a text box holding
"3, 9, 9". :meth:`.presets.Field.coerce` turns both back into the config's type, within the field's
bounds.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import gradio as gr

from ..plan import Plan
from . import presets, tuned
from .models import AppError
from .tuned import DEFAULT_SPEEDUP


def plugin_inputs(
    plugins: dict[str, dict[str, Any]] | None = None,
    presets_: dict[str, str] | None = None,
    *,
    tuned: bool = False,
    tuned_speedup: float = DEFAULT_SPEEDUP,
) -> list[Any]:
    """The "generate" endpoint's inputs after :data:`.app.BASE_INPUTS`, for API clients.

    ``plugins``: ``{key: field values}`` of the enabled plugins (missing fields: the preset's);
    every other plugin is disabled. Order: per plugin of :func:`presets.plugins`,
    ``enabled, preset, *fields``; then ``tuned, tuned_speedup`` (with ``tuned`` the model's plan
    runs at that speed and the plugin values are not used).
    """
    plugins = plugins or {}
    out: list[Any] = []
    for spec in presets.plugins():
        preset = (presets_ or {}).get(spec.key, "balanced")
        values = spec.defaults(preset if preset in spec.presets else "balanced")
        values.update(plugins.get(spec.key, {}))
        out += [spec.key in plugins, preset] + [_widget_value(f, values[f.name]) for f in spec.fields]
    return out + [tuned, tuned_speedup]


def _widget_value(field: presets.Field, value: Any) -> Any:
    """``value`` as the field's widget holds it: a string for a choice field, "3, 9, 9" for a tuple of
    whole numbers (a text box), else as is."""
    if value is None:
        return value
    if field.kind == "ints" and isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value) if field.kind == "choice" else value


def split_inputs(values: list[Any]) -> tuple[dict[str, dict[str, Any]], Any, Any]:
    """``({key: field values} of the enabled plugins, tuned, tuned_speedup)`` from the inputs after the base ones."""
    if len(values) < 2:
        raise AppError(f"expected the plugin values and then tuned, tuned_speedup; got {len(values)} values")
    return split_plugin_values(values[:-2]), values[-2], values[-1]


def split_plugin_values(values: list[Any]) -> dict[str, dict[str, Any]]:
    """``{key: field values}`` of the enabled plugins, from the panels' flat list of values."""
    enabled: dict[str, dict[str, Any]] = {}
    i = 0
    for spec in presets.plugins():
        on, _preset = values[i], values[i + 1]
        fields = values[i + 2 : i + 2 + len(spec.fields)]
        i += 2 + len(spec.fields)
        if on:
            enabled[spec.key] = {f.name: v for f, v in zip(spec.fields, fields)}
    if i != len(values):
        raise AppError(f"expected {i} plugin values, got {len(values)}")
    return enabled


@dataclasses.dataclass
class TunedPanel:
    """The "Tuned plan" panel: its note, the "use the tuned plan" box and the speed slider."""

    accordion: gr.Accordion
    note: gr.Markdown
    enabled: gr.Checkbox
    speed: gr.Slider

    def inputs(self) -> list[Any]:
        """The "generate" inputs it adds (:data:`.app.TUNED_INPUTS`)."""
        return [self.enabled, self.speed]

    def updatables(self) -> list[Any]:
        """What a model change updates, in the order of :func:`tuned_panel_updates`."""
        return [self.accordion, self.note, self.enabled, self.speed]


def build_tuned_panel() -> TunedPanel:
    """The tuned preset's accordion (its range and availability come with the model: :func:`tuned_panel_updates`)."""
    with gr.Accordion("Tuned plan", open=True, elem_id="panel-tuned") as accordion:
        note = gr.Markdown("The selected model's plan from `accel tune`, as a preset with a speed slider.")
        with gr.Row(equal_height=True):
            enabled = gr.Checkbox(label="use the tuned plan", value=False, elem_id="use-tuned", scale=2, min_width=160)
            speed = gr.Slider(
                *tuned.SPEED_BOUNDS,
                value=tuned.DEFAULT_SPEEDUP,
                step=tuned.SPEED_STEP,
                label="speed (x fewer denoiser FLOPs)",
                info="the best held-out quality among the plan's settings at least this fast",
                elem_id="tuned-speed",
                scale=5,
                min_width=300,
            )
    return TunedPanel(accordion, note, enabled, speed)


def tuned_note(plan: Plan | None, reason: str | None, on: bool = False, speedup: Any = None) -> str:
    """The tuned panel's note: the plan's range (and, when on, what the speed picks), or why there is none."""
    if plan is None:
        return f"*Not available for this model:* {reason}"
    note = tuned.describe(plan)
    return f"{note}  \n{tuned.preview(plan, speedup)}" if on else note


def tuned_panel_updates(plan: Plan | None, reason: str | None) -> list[Any]:
    """Updates of the tuned panel (accordion label, note, box, slider) for the selected model's plan or ``reason``.

    The box is switched off; with a plan the slider spans its speedup range (a one-setting plan: a
    fixed slider at that speed), without one it is disabled.
    """
    if plan is None:
        low, high = tuned.SPEED_BOUNDS
        return [
            gr.update(label="Tuned plan: not for this model"),
            tuned_note(None, reason),
            gr.update(interactive=False, value=False),
            gr.update(minimum=low, maximum=high, value=tuned.DEFAULT_SPEEDUP, interactive=False),
        ]
    low, high = plan.speedup_range()
    fixed = high - low < tuned.SPEED_STEP
    return [
        gr.update(label="Tuned plan: available for this model"),
        tuned_note(plan, None),
        gr.update(interactive=True, value=False),
        gr.update(
            minimum=high - tuned.SPEED_STEP if fixed else low,
            maximum=high,
            value=high if fixed else low,
            interactive=not fixed,
        ),
    ]


def build_plugin_panels() -> tuple[list[Any], list[Any]]:
    """All panels: their "generate" inputs and the components a model change updates (see :func:`_plugin_panel`)."""
    plugin_components: list[Any] = []
    panel_updates: list[Any] = []
    for spec in presets.plugins():
        inputs, updates = _plugin_panel(spec)
        plugin_components += inputs
        panel_updates += updates
    return plugin_components, panel_updates


def _plugin_panel(spec: presets.PluginSpec) -> tuple[list[Any], list[Any]]:
    """One plugin's accordion; returns its inputs (enabled, preset, *fields) and updatables (accordion, note, enabled).

    Picking a preset fills in the settings; editing a setting switches the preset to "custom".
    """
    with gr.Accordion(spec.title, open=False, elem_id=f"panel-{spec.key}") as accordion:
        note = gr.Markdown(spec.blurb)
        with gr.Row(equal_height=True):
            enabled = gr.Checkbox(label="enable", value=False, elem_id=f"use-{spec.key}", scale=2, min_width=160)
            preset = gr.Radio(
                list(presets.PRESET_NAMES) + [presets.CUSTOM], value="balanced", label="preset", scale=5, min_width=300
            )
        widgets = []
        values = spec.defaults()
        for start in range(0, len(spec.fields), 2):  # two settings per row
            with gr.Row(equal_height=True):
                for field in spec.fields[start : start + 2]:
                    widgets.append(_field_widget(field, values[field.name]))
    preset.input(functools.partial(_preset_values, spec), inputs=preset, outputs=widgets, api_visibility="private")
    for widget in widgets:
        widget.input(lambda: presets.CUSTOM, outputs=preset, api_visibility="private")
    return [enabled, preset, *widgets], [accordion, note, enabled]


def panel_support_updates(support: dict[str, str | None]) -> list[Any]:
    """Updates of every panel (accordion label, note, enable box) for ``{key: reason it is unavailable}``."""
    updates: list[Any] = []
    for spec in presets.plugins():
        reason = support[spec.key]
        if reason is None:
            updates += [
                gr.update(label=f"{spec.title}: available for this model"),
                f"{spec.blurb}",
                gr.update(interactive=True),
            ]
        else:
            updates += [
                gr.update(label=f"{spec.title}: not for this model"),
                f"{spec.blurb}  \n*Not available for this model:* {reason}",
                gr.update(interactive=False, value=False),
            ]
    return updates


def _field_widget(field: presets.Field, value: Any) -> Any:
    """A dropdown (choice fields), a text box (tuples of whole numbers, checked on generate against the
    field's bounds) or a slider for one plugin setting."""
    if field.kind == "ints":
        bounds = f"{field.length} whole numbers in [{field.minimum:g}, {field.maximum:g}]"
        return gr.Textbox(
            value=_widget_value(field, value),
            label=field.label,
            info=f"{field.info}; {bounds}" if field.info else bounds,
            max_length=64,
            min_width=200,
        )
    if field.kind == "choice":
        return gr.Dropdown(
            [str(c) for c in field.choices],
            value=_widget_value(field, value),
            label=field.label,
            info=field.info or None,
            min_width=200,
        )
    return gr.Slider(
        field.minimum,
        field.maximum,
        value=value,
        step=field.step,
        label=field.label,
        info=field.info or None,
        min_width=200,
    )


def _preset_values(spec: presets.PluginSpec, preset: str) -> list[Any]:
    """The settings of ``preset`` (no change for the "custom" preset)."""
    if preset not in spec.presets:
        return [gr.update() for _ in spec.fields]
    values = spec.presets[preset]
    return [_widget_value(f, values[f.name]) for f in spec.fields]
