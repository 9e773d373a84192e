"""The GPU benchmark: five full-size architectures in bfloat16, eager and compiled, every accel plugin and
the peers, in one command that fits in 8 minutes on one H100.

    python -m benchmarks.gpu                 # on a GPU: writes benchmarks/results/gpu/results.{json,md}
    python -m benchmarks.gpu --smoke         # the same code on the CPU at tiny sizes (under 2 minutes)
    python -m benchmarks.gpu --models sd15 wan --modes eager --repeats 3

Per model and row it reports, beside each other:

* the FLOP ratio (baseline denoiser FLOPs over the row's, counted as they run, eager);
* the paired wall-clock ratio in eager mode (baseline and row alternate ``--repeats`` times; accel's
  hooks come off and on between the runs);
* the wall-clock ratio compiled (``compile_repeated_blocks`` where diffusers supports it, else
  ``torch.compile`` of the denoiser): each row's timed runs follow its first, compiling call, and the
  baseline is timed before and after all rows (taking hooks off and on between runs would recompile);
* seconds per generation, the first-call compile time, and the peak GPU memory of a generation.

Random weights: the figures are speed, memory and FLOPs, never quality. A time budget
(``--budget-s``, 460 s by default) keeps the run inside 8 minutes: a row that would overrun it is
listed as not run, never estimated. Results are written only from a real GPU run; ``--smoke`` (CPU,
tiny models, dynamo with the ``eager`` backend instead of inductor) writes to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import torch

from accel.devices import what_ran
from accel.metrics.cost import ModuleFlops, synchronize

from .models import SPECS, Workload, build
from .rows import Row, accel_rows, peer_rows

RESULTS = os.path.join(os.path.dirname(__file__), "..", "results", "gpu")


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny models on the CPU: checks the code, measures nothing"
    )
    parser.add_argument("--models", nargs="+", choices=list(SPECS), default=list(SPECS))
    parser.add_argument("--modes", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"])
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed generations per row, paired in eager mode (default: 2; 1 --smoke)",
    )
    parser.add_argument("--budget-s", type=float, default=460.0, help="stop starting rows after this many seconds")
    parser.add_argument("--no-peers", action="store_true", help="accel's rows only")
    parser.add_argument("--out", default=None, help="results folder (default: benchmarks/results/gpu on a GPU)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------- measuring
def generate(workload: Workload) -> float:
    """Seconds of one generation (the device synchronised on both sides)."""
    synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        workload.pipe(**workload.call, generator=torch.Generator().manual_seed(0))
    synchronize()
    return time.perf_counter() - start


def peak_gib(workload: Workload) -> float | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.reset_peak_memory_stats()
    generate(workload)
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def denoiser_flops(workload: Workload) -> int | None:
    try:
        with ModuleFlops(workload.denoiser) as flops:
            generate(workload)
        return flops.total
    except Exception:  # a peer that patches the forward so that a counting hook breaks it
        return None


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _attached(row: Row, workload: Workload) -> Any:
    class Attached:
        def __enter__(self) -> None:
            row.attach(workload.pipe)

        def __exit__(self, *exc: Any) -> None:
            row.detach(workload.pipe)

    return Attached()


def eager_rows(workload: Workload, rows: list[Row], repeats: int, budget: Budget, result: dict) -> None:
    base_first = generate(workload)  # warm-up (kernels, allocator)
    base = generate(workload)
    base_flops = denoiser_flops(workload)
    result["baseline"] = {
        "eager_s": round(base, 4),
        "first_call_s": round(base_first, 3),
        "flops": base_flops,
        "peak_gib": peak_gib(workload),
    }
    for row in rows:
        entry = result.setdefault(row.name, {"peer": row.peer, "plugins": row.plugins})
        if budget.left() < base * (4 + 2 * repeats):
            entry["eager"] = "not run (time budget)"
            continue
        try:
            with _attached(row, workload):
                first = generate(workload)
                flops = denoiser_flops(workload)
                peak = peak_gib(workload)
            pairs = []
            for _ in range(repeats):
                b = generate(workload)
                with _attached(row, workload):
                    pairs.append((b, generate(workload)))
        except Exception as exc:
            entry["eager"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            _safe_detach(row, workload)
            continue
        row_s = median([r for _, r in pairs])
        entry.update(
            eager_s=round(row_s, 4),
            eager_ratio=round(median([b for b, _ in pairs]) / row_s, 3),
            flops=flops,
            flop_ratio=round(base_flops / flops, 3) if flops and base_flops else None,
            first_call_s=round(first, 3),
            peak_gib=peak,
        )


def compiled_rows(workload: Workload, rows: list[Row], repeats: int, budget: Budget, result: dict, smoke: bool):
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):  # one graph set per row is expected, not a failure
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)
    denoiser = workload.denoiser
    backend = "eager" if smoke else "inductor"  # --smoke: dynamo's tracing and guards without code generation
    if getattr(type(denoiser), "_repeated_blocks", None):
        denoiser.compile_repeated_blocks(backend=backend)
        how = "compile_repeated_blocks"
    else:
        denoiser.compile(backend=backend)
        how = "torch.compile(denoiser)"
    result["baseline"]["compiled_with"] = how
    first = generate(workload)
    base_times = [generate(workload) for _ in range(repeats)]
    result["baseline"].update(compile_s=round(first - median(base_times), 2))
    for row in rows:
        entry = result[row.name]
        estimate = median(base_times) * (2 + repeats) + max(result["baseline"]["compile_s"], 0)
        if budget.left() < estimate:
            entry["compiled"] = "not run (time budget)"
            continue
        try:
            with _attached(row, workload):
                row_first = generate(workload)
                times = [generate(workload) for _ in range(repeats)]
        except Exception as exc:
            entry["compiled"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            _safe_detach(row, workload)
            continue
        entry.update(compiled_s=round(median(times), 4), compile_s=round(row_first - median(times), 2))
    base_times += [generate(workload) for _ in range(repeats)]
    base = median(base_times)
    result["baseline"]["compiled_s"] = round(base, 4)
    for row in rows:
        entry = result[row.name]
        if "compiled_s" in entry:
            entry["compiled_ratio"] = round(base / entry["compiled_s"], 3)


def _safe_detach(row: Row, workload: Workload) -> None:
    try:
        row.detach(workload.pipe)
    except Exception:
        pass


def run_model(name: str, args: argparse.Namespace, device: torch.device, budget: Budget) -> dict[str, Any]:
    started = time.monotonic()
    workload = build(name, device, torch.bfloat16, args.smoke)
    result: dict[str, Any] = {"title": workload.title, "steps": workload.steps, "rows": {}, "notes": {}}
    rows = accel_rows(workload)
    if not args.no_peers:
        peers, result["notes"] = peer_rows(workload)
        rows += peers
    if "eager" in args.modes:
        eager_rows(workload, rows, args.repeats, budget, result["rows"])
    else:
        result["rows"]["baseline"] = {}
    if "compiled" in args.modes:
        # the peers patch modules in ways torch.compile may not take: compiled rows are accel's
        compiled_rows(workload, [r for r in rows if r.peer is None], args.repeats, budget, result["rows"], args.smoke)
    result["seconds"] = round(time.monotonic() - started, 1)
    del workload
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


# ---------------------------------------------------------------------------------------- output
def markdown(results: dict[str, Any]) -> str:
    ran = results["ran"]
    lines = [
        f"# GPU benchmark ({ran['device_name']}, {ran['dtype']}, torch {ran['torch']}, diffusers {ran['diffusers']})",
        "",
        "Random weights: speed, memory and FLOPs only. Ratios are over the baseline of the same mode "
        "(x: higher is faster); `python -m benchmarks.gpu` (see benchmarks/gpu/README.md).",
    ]
    for model in results["models"].values():
        lines += ["", f"## {model['title']} ({model['steps']} steps; {model['seconds']} s)", ""]
        lines.append(
            "| row | FLOP ratio | eager wall ratio | eager s | compiled wall ratio | compiled s | first-call "
            "compile s | peak GiB |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for row, entry in model["rows"].items():
            cells = [
                entry.get("flop_ratio", "1" if row == "baseline" else "-"),
                entry.get("eager_ratio", entry.get("eager", "1" if row == "baseline" else "-")),
                entry.get("eager_s", "-"),
                entry.get("compiled_ratio", entry.get("compiled", "1" if row == "baseline" else "-")),
                entry.get("compiled_s", "-"),
                entry.get("compile_s", "-"),
                entry.get("peak_gib", "-"),
            ]
            lines.append(f"| {row} | " + " | ".join(str(c) for c in cells) + " |")
        for peer, note in model["notes"].items():
            lines.append(f"\n{peer}: {note}")
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(results))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.repeats = args.repeats or (1 if args.smoke else 2)
    cuda = torch.cuda.is_available()
    if not args.smoke and not cuda:
        raise SystemExit("benchmarks.gpu measures on a GPU and none is here; --smoke runs the code on the CPU")
    device = torch.device("cpu") if args.smoke else torch.device("cuda")
    out = args.out or (tempfile.mkdtemp(prefix="accel-gpu-smoke-") if args.smoke else RESULTS)
    if os.path.realpath(out) == os.path.realpath(RESULTS) and (args.smoke or not cuda):
        raise SystemExit(f"{RESULTS} holds GPU figures only; write a smoke run elsewhere (--out)")
    budget = Budget(args.budget_s)
    results: dict[str, Any] = {"ran": what_ran(device, torch.bfloat16), "smoke": args.smoke, "models": {}}
    for name in args.models:
        results["models"][name] = run_model(name, args, device, budget)
        write(results, out)  # after every model: a run cut short keeps what it measured
        print(f"{name}: {results['models'][name]['seconds']} s", flush=True)
    print(markdown(results))
    print(f"results: {os.path.abspath(out)}")
    return 0
