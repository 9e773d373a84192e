"""The curves tab's logic, without Gradio: find finished ``accel eval`` run folders under a root, read
their summary and Pareto plot, and list one config's samples with their prompts.

The server pins a runs root (``accel demo --runs-root DIR``); a folder the page names is read only if
its real path lies inside it (:func:`resolve_root`). Only files an ``accel eval`` run writes are read
(``summary.json``, ``pareto.png``, ``records.jsonl`` and the sample PNGs it lists), and only if their
real path lies inside the run folder: a symlink or record pointing elsewhere is skipped. Messages name
no server path. Images are returned as PIL images, so the web server never serves a path from the
folder directly.
"""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Any

from ..evaluation.records import RECORDS
from .models import AppError

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


OUTSIDE_ROOT = "that folder is outside the runs root of this server; runs are read only from inside it"
FIXED_ROOT = "the runs root is fixed on this server; runs are read only from it"
NOT_A_RUN = "that is not a finished accel eval run under the runs root (no summary.json)"


def resolve_root(pinned: str, typed: str | None = None, *, editable: bool = True) -> str:
    """The real path of the folder to list: ``typed`` (absolute, or relative like ``pinned``), or ``pinned``.

    ``typed`` must resolve (symlinks followed) to ``pinned`` or a folder inside it, and to ``pinned``
    itself when the root is not ``editable``; else :class:`AppError`, with the same words whether the
    folder exists or not.
    """
    base = _real(pinned)
    if not isinstance(typed, str) or not typed.strip():
        return base
    path = _real(typed)
    if not _inside(base, path):
        raise AppError(OUTSIDE_ROOT)
    if not editable and path != base:
        raise AppError(FIXED_ROOT)
    return path


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path.strip())))


def _inside(base: str, path: str) -> bool:
    """Whether the real path ``path`` is ``base`` or lies under it (both already real paths)."""
    try:
        return os.path.commonpath([base, path]) == base
    except ValueError:  # different drives
        return False


def _file_inside(folder: str, relative: str) -> str | None:
    """The real path of ``folder/relative`` if it is a file inside ``folder`` (no link out), else None."""
    path = os.path.realpath(os.path.join(folder, relative))
    return path if _inside(folder, path) and os.path.isfile(path) else None


def list_runs(root: str) -> list[str]:
    """Run folders (relative to ``root``) that contain a ``summary.json``, newest first.

    Symlinked folders are not followed, and a run whose ``summary.json`` links out of it is left out.
    """
    if not isinstance(root, str) or not root.strip():
        return []
    root = _real(root)
    if not os.path.isdir(root):
        return []
    found: list[tuple[float, str]] = []
    base_depth = root.rstrip(os.sep).count(os.sep)
    for current, dirs, files in os.walk(root):
        depth = current.rstrip(os.sep).count(os.sep) - base_depth
        if "summary.json" in files and current != root:
            summary = _file_inside(current, "summary.json")
            if summary is not None:
                found.append((os.path.getmtime(summary), os.path.relpath(current, root)))
            dirs[:] = []  # samples/ below a run are not runs
            continue
        if depth >= MAX_DEPTH:
            dirs[:] = []
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return [name for _, name in sorted(found, reverse=True)]


def run_dir(root: str, name: str) -> str:
    """The real folder of run ``name`` under ``root``; raises :class:`AppError` if it is not a run there."""
    if not name:
        raise AppError("pick a run folder")
    base = _real(root)
    path = os.path.realpath(os.path.join(base, name))
    if not _inside(base, path) or path == base or _file_inside(path, "summary.json") is None:
        raise AppError(NOT_A_RUN)
    return path


def load_rows(path: str) -> list[dict[str, Any]]:
    summary = _file_inside(path, "summary.json")
    if summary is None:
        raise AppError(NOT_A_RUN)
    try:
        with open(summary) as f:
            rows = json.load(f)
    except (OSError, ValueError):
        rows = None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "config" in r for r in rows):
        raise AppError("the run's summary.json is not an accel eval summary (a list of rows with a 'config')")
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

    png = _file_inside(path, "pareto.png")
    if png is None:
        return None
    with Image.open(png) as image:
        return image.convert("RGB")


def _records(path: str) -> dict[str, dict[str, Any]]:
    """The run's records by key (first occurrence wins), from ``records.jsonl`` and every shard, like
    :func:`accel.evaluation.records.read_records`, but reading no records file that links out of the run."""
    shards = glob.glob(os.path.join(glob.escape(path), "records.rank*.jsonl"))
    out: dict[str, dict[str, Any]] = {}
    for name in [RECORDS] + sorted(os.path.basename(f) for f in shards):
        file = _file_inside(path, name)
        if file is None:
            continue
        with open(file) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a torn or empty line
                if isinstance(record, dict) and record.get("key") and record["key"] not in out:
                    out[record["key"]] = record
    return out


def samples(path: str, config: str, limit: int = MAX_SAMPLES) -> list[tuple[Any, str]]:
    """``(PIL image, caption)`` of the config's samples (prompt and seed as the caption)."""
    from PIL import Image

    records = [r for r in _records(path).values() if r.get("config") == config]
    records.sort(key=lambda r: (r.get("prompt_id", 0), r.get("seed", 0)))
    out = []
    for record in records[:limit]:
        file = _file_inside(path, str(record.get("path", "")))
        if file is None or not file.endswith(".png"):
            continue
        with Image.open(file) as image:
            picture = image.convert("RGB")
        if picture.height < 128:  # 32 px samples: enlarge for the gallery (nearest, no smoothing)
            scale = max(1, 128 // picture.height)
            picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
        out.append((picture, f"{record.get('prompt', '')} (seed {record.get('seed', '?')})"))
    return out
