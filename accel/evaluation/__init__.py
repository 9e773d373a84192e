"""``accel eval``: sweep plugin configs over a prompt set and draw quality-speed curves.

    from accel.evaluation import evaluate
    rows = evaluate("sweep.yaml", out="runs")        # or a SweepSpec / list of them

Output per sweep, in ``<out>/<name>/``: ``config.json``, ``samples/<config>/*.png`` (prompt and
config in the PNG metadata), ``records.jsonl``, ``flops.json``, ``summary.csv`` / ``summary.json``,
``pareto.png`` and ``pareto.html``. Re-running resumes; finished samples are never redone. One
run at a time per folder (a lock; a second one is refused, or waits with ``wait=True``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..config import check_int
from ..errors import ConfigError
from .defaults import default_specs
from .pareto import write_plots
from .runfolder import run_folder_lock
from .runner import process_state, run_generation
from .scoring import format_table, noisy_timing, score_run
from .spec import SweepSpec, check_run_names, load_specs, specs_from_data


def evaluate(
    specs: str | SweepSpec | list[SweepSpec] | dict | None = None,
    out: str = "runs",
    max_samples: int | None = None,
    progress: bool = True,
    speed: str = "auto",
    wait: bool | float = False,
    device: str | None = None,
    dtype: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) every sweep; returns ``{run_dir: {"rows", "png", "html", "noisy_timing"}}``.

    ``speed`` is the x axis of the curves and verdicts (``"auto"``, ``"flops"`` or ``"wall"``, see
    :func:`~accel.evaluation.scoring.score_run`); ``noisy_timing`` lists the entries whose paired
    wall-clock speedups spread wide.

    Under ``accelerate launch --num_processes N`` (add ``--multi_gpu``, which on a CPU-only machine
    starts N gloo processes) the samples are split across processes and the main one scores them.

    Every spec is validated before anything is written. A run folder has one run at a time: when
    another process holds it, ``wait=False`` raises a :class:`~accel.errors.StateError` at once,
    ``wait=True`` queues behind it, a number waits at most that many seconds.

    ``device`` / ``dtype`` (the CLI's ``--device`` / ``--dtype``), when given, replace every sweep's own
    ``device`` / ``dtype`` fields.
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
    overrides = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    if overrides:
        spec_list = [dataclasses.replace(spec, **overrides) for spec in spec_list]
    check_run_names(spec_list, specs if isinstance(specs, str) else None)
    check_int("evaluate", "max_samples", max_samples, 1, allow_none=True)
    if not isinstance(wait, (bool, int, float)) or (not isinstance(wait, bool) and wait < 0):
        raise ConfigError(f"evaluate.wait must be True, False or a number of seconds >= 0, got {wait!r}")
    results: dict[str, dict[str, Any]] = {}
    state = process_state()
    for spec in spec_list:
        # the main process holds the run folder from generation through scoring (see runfolder.py)
        with run_folder_lock(os.path.join(out, spec.run_name), state, wait=wait):
            run_dir = run_generation(spec, out, max_samples=max_samples, progress=progress)
            if state.is_main_process:
                rows = score_run(run_dir, spec, speed=speed)
                png, html = write_plots(run_dir, rows, f"{spec.run_name} ({spec.steps} steps)")
                results[run_dir] = {
                    "rows": rows,
                    "png": os.path.abspath(png),
                    "html": os.path.abspath(html),
                    "noisy_timing": noisy_timing(rows),
                }
            state.wait_for_everyone()
    return results


__all__ = ["SweepSpec", "default_specs", "evaluate", "format_table", "load_specs", "score_run", "write_plots"]
