"""The "Curves" tab: the Pareto plot, summary table and samples of finished ``accel eval`` runs.

Its endpoints: ``list_runs``, ``open_run`` and ``samples``; the reading of run folders is in :mod:`.curves`.
Each takes the runs root as typed in the page, but reads only inside the root the server pinned
(``build_app(runs_root=...)``, ``accel demo --runs-root``): the handlers get that root bound, not from
the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from . import curves
from .handlers import handler


@dataclass
class CurvesTab:
    """The tab's components that its events read or update."""

    runs_root: str  # the pinned root (the server's, not the page's)
    runs_root_editable: bool
    runs_root_box: gr.Textbox
    refresh_button: gr.Button
    run_choice: gr.Dropdown
    curves_note: gr.Markdown
    pareto: gr.Image
    summary_table: gr.Dataframe
    config_choice: gr.Dropdown
    gallery: gr.Gallery


def build_curves_tab(runs_root: str, runs_root_editable: bool) -> CurvesTab:
    """Lay out the tab's components inside the current ``gr.Tab`` (events: :func:`wire_curves_tab`)."""
    gr.Markdown(
        "Quality-speed curves of finished `accel eval` runs. Click a row of the table (or pick "
        "a config) to see its samples."
    )
    with gr.Row():
        runs_root_box = gr.Textbox(
            value=runs_root,
            label="Runs root (accel eval --out)" + ("; a folder inside it may be typed" if runs_root_editable else ""),
            max_lines=1,
            interactive=runs_root_editable,
            scale=4,
        )
        refresh_button = gr.Button("Refresh", scale=1)
        run_choice = gr.Dropdown(label="Run", choices=[], value=None, scale=4)
    curves_note = gr.Markdown()
    pareto = gr.Image(label="Pareto plot (pareto.png)", type="pil", interactive=False, format="png")
    summary_table = gr.Dataframe(label="summary.json (click a row)", interactive=False, wrap=True)
    config_choice = gr.Dropdown(label="Config", choices=[], value=None)
    gallery = gr.Gallery(
        label="Samples of the config (prompt and seed as captions)",
        columns=8,
        height="auto",
        object_fit="contain",
        elem_classes=["accel-sample"],
        format="png",
    )
    return CurvesTab(
        runs_root,
        runs_root_editable,
        runs_root_box,
        refresh_button,
        run_choice,
        curves_note,
        pareto,
        summary_table,
        config_choice,
        gallery,
    )


def wire_curves_tab(demo: gr.Blocks, tab: CurvesTab) -> None:
    """Wire the tab's events: list runs (button, Enter, page load), open one, pick a config, show its samples."""
    pinned = {"pinned": tab.runs_root, "editable": tab.runs_root_editable}
    runs = [tab.run_choice, tab.curves_note]
    tab.refresh_button.click(handler(refresh_runs, **pinned), tab.runs_root_box, runs, api_name="list_runs")
    tab.runs_root_box.submit(handler(refresh_runs, **pinned), tab.runs_root_box, runs, api_visibility="private")
    demo.load(handler(refresh_runs, **pinned), tab.runs_root_box, runs, api_visibility="private")
    tab.run_choice.change(
        handler(open_run, **pinned),
        [tab.runs_root_box, tab.run_choice],
        [tab.pareto, tab.summary_table, tab.config_choice, tab.curves_note],
        api_name="open_run",
    )
    tab.summary_table.select(select_row, tab.summary_table, tab.config_choice, api_visibility="private")
    tab.config_choice.change(
        handler(show_samples, **pinned),
        [tab.runs_root_box, tab.run_choice, tab.config_choice],
        tab.gallery,
        api_name="samples",
    )


def refresh_runs(root: str, *, pinned: str, editable: bool) -> tuple[Any, str]:
    """The run dropdown (first run selected) and a note on what was found under ``root`` (inside ``pinned``)."""
    runs = curves.list_runs(curves.resolve_root(pinned, root, editable=editable))
    if not runs:
        note = (
            "No finished `accel eval` runs in this folder (sub-folders with a summary.json). "
            "Make one with `accel eval --out` and this folder."
        )
    else:
        note = f"{len(runs)} run(s) in this folder."
    return gr.update(choices=runs, value=runs[0] if runs else None), note


def open_run(root: str, name: str, *, pinned: str, editable: bool) -> tuple[Any, Any, Any, str]:
    """A run's Pareto plot, summary table, config choices (first method selected) and a note."""
    base = curves.resolve_root(pinned, root, editable=editable)
    if not name:
        return None, gr.update(value=None), gr.update(choices=[], value=None), ""
    path = curves.run_dir(base, name)
    rows = curves.load_rows(path)
    headers, data = curves.table(rows)
    configs = [r["config"] for r in rows]
    first = next((r["config"] for r in rows if r.get("kind") == "method"), configs[0] if configs else None)
    image = curves.pareto_image(path)
    note = f"`{name}`: {len(rows)} configs" + ("" if image is not None else " (no pareto.png in this run)")
    return image, gr.update(value={"headers": headers, "data": data}), gr.update(choices=configs, value=first), note


def select_row(data: Any, evt: gr.SelectData) -> Any:
    """Select the config of the clicked table row."""
    if evt.row_value:
        return gr.update(value=str(evt.row_value[0]))
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return gr.update(value=str(data["config"].iloc[row])) if hasattr(data, "iloc") else gr.update()


def show_samples(root: str, name: str, config: str, *, pinned: str, editable: bool) -> list[Any]:
    """The gallery items (image, caption) of one config of a run."""
    base = curves.resolve_root(pinned, root, editable=editable)
    if not (name and config):
        return []
    return curves.samples(curves.run_dir(base, name), config)
