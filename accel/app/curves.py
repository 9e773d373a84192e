"""The curves tab's logic, without Gradio: find finished ``accel eval`` run folders under a root, read
their summary and Pareto plot, and list one config's samples with their prompts.

Only files an ``accel eval`` run writes are read (``summary.json``, ``pareto.png``, ``records.jsonl``
and the sample PNGs it lists), and only inside the run folder: a record pointing elsewhere is skipped.
Images are returned as PIL images, so the web server never serves a path from the folder directly.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ..errors import ConfigError
from ..evaluation.records import read_records

#: Table columns, in order, when present in the summary.
COLUMNS = (
    "config",
    "kind",
    "steps",
    "samples",
    "speedup",
    "latency_s",
    "flop_ratio",
    "nfe",
    "psnr",
    "ssim",
    "lpips",
    "fid",
    "alignment",
    "temporal_consistency",
    "clip_score",
    "beats_fewer_steps",
)
MAX_DEPTH = 2
MAX_SAMPLES = 48


def list_runs(root: str) -> list[str]:
    """Run folders (relative to ``root``) that contain a ``summary.json``, newest first."""
    if not isinstance(root, str) or not root.strip():
        return []
    root = os.path.abspath(os.path.expanduser(root.strip()))
    if not os.path.isdir(root):
        return []
    found: list[tuple[float, str]] = []
    base_depth = root.rstrip(os.sep).count(os.sep)
    for current, dirs, files in os.walk(root):
        depth = current.rstrip(os.sep).count(os.sep) - base_depth
        if "summary.json" in files and current != root:
            found.append((os.path.getmtime(os.path.join(current, "summary.json")), os.path.relpath(current, root)))
            dirs[:] = []  # samples/ below a run are not runs
            continue
        if depth >= MAX_DEPTH:
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return [name for _, name in sorted(found, reverse=True)]


def run_dir(root: str, name: str) -> str:
    """The absolute folder of run ``name`` under ``root``; raises ValueError if it is not a run there."""
    if not name:
        raise ConfigError("pick a run folder")
    base = os.path.realpath(os.path.abspath(os.path.expanduser(root.strip())))
    path = os.path.realpath(os.path.join(base, name))
    if os.path.commonpath([base, path]) != base or not os.path.isfile(os.path.join(path, "summary.json")):
        raise ConfigError(f"{name!r} is not a finished accel eval run under {root!r} (no summary.json)")
    return path


def load_rows(path: str) -> list[dict[str, Any]]:
    with open(os.path.join(path, "summary.json")) as f:
        rows = json.load(f)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "config" in r for r in rows):
        raise ConfigError(f"{path}/summary.json is not an accel eval summary (a list of rows with a 'config')")
    return rows


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """``(headers, rows)`` with the present columns, numbers rounded for reading."""
    headers = [c for c in COLUMNS if any(c in r for r in rows)]
    return headers, [[_cell(r.get(c)) for c in headers] for r in rows]


def _cell(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return round(value, 4)
    if isinstance(value, str):
        try:  # summary.json may hold numbers written with default=str
            number = float(value)
            return "" if math.isnan(number) else round(number, 4)
        except ValueError:
            return value
    return value


def pareto_image(path: str) -> Any:
    """The run's ``pareto.png`` as a PIL image, or None."""
    from PIL import Image

    png = os.path.join(path, "pareto.png")
    if not os.path.isfile(png):
        return None
    with Image.open(png) as image:
        return image.convert("RGB")


def samples(path: str, config: str, limit: int = MAX_SAMPLES) -> list[tuple[Any, str]]:
    """``(PIL image, caption)`` of the config's samples (prompt and seed as the caption)."""
    from PIL import Image

    records = [r for r in read_records(path).values() if r.get("config") == config]
    records.sort(key=lambda r: (r.get("prompt_id", 0), r.get("seed", 0)))
    out = []
    for record in records[:limit]:
        file = os.path.realpath(os.path.join(path, str(record.get("path", ""))))
        if os.path.commonpath([path, file]) != path or not file.endswith(".png") or not os.path.isfile(file):
            continue
        with Image.open(file) as image:
            picture = image.convert("RGB")
        if picture.height < 128:  # 32 px samples: enlarge for the gallery (nearest, no smoothing)
            scale = max(1, 128 // picture.height)
            picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
        out.append((picture, f"{record.get('prompt', '')} (seed {record.get('seed', '?')})"))
    return out
