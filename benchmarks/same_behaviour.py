"""Does a refactor change behaviour? Dump what accel computes, then compare two dumps.

    python -m benchmarks.same_behaviour dump before.json    # on the old tree
    python -m benchmarks.same_behaviour dump after.json     # on the new tree
    python -m benchmarks.same_behaviour compare before.json after.json

A dump holds:

* every record of the default ``accel eval`` sweep (run afresh in a temporary folder): per entry,
  prompt and seed, the NFEs, the denoiser calls, and a hash of the sample's pixels; and the summary
  columns (PSNR, SSIM, FID, alignment, FLOP ratios, NFE) of every entry, rounded to 1e-6;
* ``accel tune``'s search space and first population on every built-in diffusion model;
* the demo's plugin panels (fields, presets, no-op settings) and the compatibility verdict of every
  pair of plugins.

Wall-clock columns are left out (they change from run to run). Entries are keyed by name, so a
refactor may reorder them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import tempfile
from typing import Any

#: every quality, FLOP and NFE column of an entry's row; not the wall-clock ``speedup`` (it changes from run to run)
SUMMARY_COLUMNS = (
    "psnr",
    "ssim",
    "fid",
    "alignment",
    "temporal_consistency",
    "clip_score",
    "flop_ratio",
    "denoiser_flop_ratio",
    "nfe",
)


def sweep() -> dict[str, Any]:
    from accel.evaluation import evaluate
    from accel.evaluation.records import read_records

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as root:
        results = evaluate(None, out=root, progress=False, speed="flops")
        for run_dir, result in results.items():
            model = run_dir.rstrip("/").rsplit("/", 1)[-1]
            records = {}
            for key, record in sorted(read_records(run_dir).items()):
                with open(f"{run_dir}/{record['path']}", "rb") as f:
                    pixels = hashlib.sha256(f.read()).hexdigest()[:16]
                records[key] = {
                    "nfe": record.get("nfe"),
                    "denoiser_calls": record.get("denoiser_calls"),
                    "png_sha256": pixels,
                }
            rows = {
                row["config"]: {c: _round(row.get(c)) for c in SUMMARY_COLUMNS if row.get(c) is not None}
                for row in result["rows"]
            }
            out[model] = {"records": records, "rows": rows}
    return out


def tune_spaces() -> dict[str, Any]:
    from accel.api import adapter_of
    from accel.pipelines.builtin import BUILTIN_MODELS
    from accel.pipelines.loading import load
    from accel.tuning.stack_space import StackSpace

    out = {}
    for name, spec in BUILTIN_MODELS.items():
        if spec.kind == "classifier" or not spec.is_trained():
            continue
        space = StackSpace(adapter_of(load(name)), 20, guided=True, linear_ag=lambda steps: None)
        out[name] = {"genes": space.describe(), "seeds": [space.key(x) for x in space.seeds()]}
    return out


def demo_and_compat() -> dict[str, Any]:
    from accel.app import presets
    from accel.compat import check_compatible
    from accel.errors import IncompatiblePluginsError

    panels = {
        spec.key: {
            "config": spec.config_cls.__name__,
            "fields": [repr(f) for f in spec.fields],
            "presets": spec.presets,
            "identity": spec.identity,
        }
        for spec in presets.plugins()
    }
    pairs = {}
    for a, b in itertools.combinations(presets.plugins(), 2):
        try:
            check_compatible([a.config({}), b.config({})])
            pairs["+".join(sorted((a.key, b.key)))] = "compatible"  # keyed by the pair, not the panels' order
        except IncompatiblePluginsError as exc:
            pairs["+".join(sorted((a.key, b.key)))] = str(exc)
    return {"panels": panels, "pairs": pairs}


def _round(value: Any) -> Any:
    return round(float(value), 6) if isinstance(value, (int, float)) else value


def compare(before: dict[str, Any], after: dict[str, Any], path: str = "") -> list[str]:
    """Every place where ``after`` differs from ``before`` (key order ignored)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            if key not in after:
                out.append(f"{path}/{key}: only before")
            elif key not in before:
                out.append(f"{path}/{key}: only after")
            else:
                out += compare(before[key], after[key], f"{path}/{key}")
        return out
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def main(argv: list[str]) -> int:
    import warnings

    warnings.simplefilter("ignore")
    if argv[:1] == ["dump"] and len(argv) == 2:
        dump = {"sweep": sweep(), "tune_spaces": tune_spaces(), "demo_and_compat": demo_and_compat()}
        with open(argv[1], "w") as f:
            json.dump(dump, f, indent=1, sort_keys=True, default=str)
        return 0
    if argv[:1] == ["compare"] and len(argv) == 3:
        before, after = (json.load(open(p)) for p in argv[1:])
        differences = compare(before, after)
        print("\n".join(differences) if differences else "identical")
        return 1 if differences else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
