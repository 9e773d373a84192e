"""``accel eval``: sweep plugin configs over a prompt set and draw quality-speed curves.

    from accel.evaluation import evaluate
    rows = evaluate("sweep.yaml", out="runs")        # or a SweepSpec / list of them

Output per sweep, in ``<out>/<name>/``: ``config.json``, ``samples/<config>/*.png`` (prompt and
config in the PNG metadata), ``records.jsonl``, ``flops.json``, ``summary.csv`` / ``summary.json``,
``pareto.png`` and ``pareto.html``. Re-running resumes; finished samples are never redone.
"""

from __future__ import annotations

import os
from typing import Any

from .defaults import default_specs
from .pareto import write_plots
from .runner import process_state, run_generation
from .scoring import format_table, score_run
from .spec import SweepSpec, load_specs, specs_from_data


def evaluate(
    specs: str | SweepSpec | list[SweepSpec] | dict | None = None,
    out: str = "runs",
    max_samples: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) every sweep; returns ``{run_dir: {"rows": [...], "png": path, "html": path}}``.

    Under ``accelerate launch --num_processes N`` (add ``--multi_gpu``, which on a CPU-only machine
    starts N gloo processes) the samples are split across processes and the main one scores them.
    """

    if specs is None:
        spec_list = default_specs()
    elif isinstance(specs, str):
        spec_list = load_specs(specs)
    elif isinstance(specs, SweepSpec):
        spec_list = [specs]
    elif isinstance(specs, dict):
        spec_list = specs_from_data(specs)
    else:
        spec_list = list(specs)
    results: dict[str, dict[str, Any]] = {}
    state = process_state()
    for spec in spec_list:
        run_dir = run_generation(spec, out, max_samples=max_samples, progress=progress)
        if state.is_main_process:
            rows = score_run(run_dir, spec)
            png, html = write_plots(run_dir, rows, f"{spec.run_name} ({spec.steps} steps)")
            results[run_dir] = {"rows": rows, "png": os.path.abspath(png), "html": os.path.abspath(html)}
        state.wait_for_everyone()
    return results


__all__ = ["SweepSpec", "default_specs", "evaluate", "format_table", "load_specs", "score_run", "write_plots"]
