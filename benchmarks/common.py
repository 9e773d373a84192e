"""What the benchmarks share: pipelines and sample generation, setups measured against fewer steps,
fold statistics, diffusers' cache hooks, and the tables and files they write.

Every benchmark runs as a module from the repository root: ``python -m benchmarks.<name>``.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

import accel
from accel.devices import resolve_device, resolve_dtype
from accel.evaluation.prompts import builtin_prompts
from accel.metrics.cost import ModuleFlops, count_flops
from accel.metrics.domain import DomainMetrics
from accel.metrics.fidelity import psnr, ssim
from accel.pipelines import load
from accel.pipelines.builtin import BUILTIN_MODELS


# ---------------------------------------------------------------------------------------- pipelines
def load_quiet(model: str, device: str | None = "cpu", dtype: str | None = None) -> Any:
    """A built-in model's pipeline, its progress bar off. ``device`` and ``dtype`` are resolved as the
    ``accel`` commands' ``--device``/``--dtype`` (None: auto); the default is float32 on the CPU."""
    where = resolve_device(device)
    pipe = load(model, device=str(where), dtype=resolve_dtype(dtype, where))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def denoiser(pipe: Any) -> torch.nn.Module:
    """The pipeline's U-Net or transformer."""
    return getattr(pipe, "unet", None) or pipe.transformer


def without_text_encoders(cls: type, **components: Any) -> Any:
    """Diffusers pipeline ``cls`` from ``components``, with no text encoder or tokenizer: prompt embeddings go in."""
    names = inspect.signature(cls.__init__).parameters
    return cls(**{name: None for name in names if name.startswith(("text_encoder", "tokenizer"))}, **components)


# ---------------------------------------------------------------------------------------- samples
def fold_items(model: str, n: int, first_seed: int) -> tuple[list[str], list[int]]:
    """``n`` of the model's built-in prompts (cycled) and their seeds, ``first_seed`` on."""
    prompts = builtin_prompts(model)
    return [prompts[i % len(prompts)] for i in range(n)], [first_seed + i for i in range(n)]


def batches(prompts: list[str], seeds: list[int], size: int) -> Iterator[tuple[list[str], list[int]]]:
    """``prompts`` and ``seeds`` in consecutive slices of ``size``."""
    for i in range(0, len(prompts), size):
        yield prompts[i : i + size], seeds[i : i + size]


def sample(pipe: Any, prompts: list[str], seeds: list[int], call: dict) -> torch.Tensor:
    """One pipeline call, a generator per seed: the images (or videos) as floats in [0, 1]."""
    out = pipe(prompt=prompts, generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="pt", **call)
    return (out.frames if hasattr(out, "frames") else out.images).float().clamp(0, 1)


def workload(model: str, steps: int, samples: int, seed_base: int, real_seed: int):
    """A built-in model's pipeline, call arguments, ``samples`` prompts with their seeds, and a real set of the
    same size with its domain metrics: what every quality benchmark against fewer steps starts from."""
    pipe = load_quiet(model)
    call = dict(BUILTIN_MODELS[model].call_defaults, num_inference_steps=steps)
    prompts, seeds = fold_items(model, samples, seed_base)
    domain = DomainMetrics(BUILTIN_MODELS[model].dataset)
    return pipe, call, prompts, seeds, domain, domain.real_samples(samples, seed=real_seed)


# ---------------------------------------------------------------------------------------- seed folds
def folds_parser(description: str, per_fold: dict[str, int], out: str) -> argparse.ArgumentParser:
    """Arguments of a benchmark of built-in models in seed folds: ``--models`` (default: those of ``per_fold``,
    samples per fold by model), ``--steps``, ``--guidance``, ``--folds``, ``--per-fold`` and ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", nargs="+", default=list(per_fold))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--per-fold", type=int, default=None, help="samples per fold (default: per model)")
    parser.add_argument("--out", default=out)
    return parser


def per_model(args: argparse.Namespace, per_fold: dict[str, int], run: Callable[[str], dict]) -> list[dict]:
    """Each of ``args.models``' results (from :func:`folds_parser`): ``<out>/<model>.json`` where an earlier run
    wrote it, else ``run(model)``; ``--per-fold`` replaces every model's entry in ``per_fold`` first."""
    if args.per_fold:
        per_fold.update({m: args.per_fold for m in per_fold})
    os.makedirs(args.out, exist_ok=True)
    results = []
    for model in args.models:
        path = os.path.join(args.out, f"{model}.json")
        if os.path.exists(path):
            with open(path) as f:
                results.append(json.load(f))
        else:
            results.append(run(model))
    return results


def mean_std(values: list[float], lone: float = 0.0) -> tuple[float, float]:
    """Mean and standard deviation over folds (``lone`` for the deviation of a single fold)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else lone)


def plus_minus(value: Sequence[float] | None, signed: bool = False) -> str:
    """A ``(mean, std)`` pair as the tables print it; ``-`` for None."""
    if value is None:
        return "-"
    mean, std = value
    return f"{mean:{'+' if signed else ''}.3g} ± {std:.2g}"


# ---------------------------------------------------------------------------------------- output
def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: the header, its rule, one line per row of cells."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *map(line, rows)]


def write_results(out: str, result: Any, lines: list[str]) -> None:
    """``out``.json (``result``) and ``out``.md (``lines``), creating ``out``'s folder."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=2)
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")


@contextlib.contextmanager
def speedup_figure(path: str, title: str, ylabels: Sequence[str], size: tuple[float, float], dpi: int):
    """Panels side by side, one per ``ylabels``, against the denoiser FLOP speedup; saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ylabels), figsize=size)
    yield axes
    for ax, label in zip(axes, ylabels):
        ax.set_xlabel("denoiser FLOP speedup (x)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


# ---------------------------------------------------------------------------------------- diffusers' caches
def remove_foreign_hooks(module: torch.nn.Module) -> None:
    """Remove every non-accel diffusers hook under ``module``."""
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is not None:
            for name in list(registry.hooks):
                if not name.startswith("accel"):
                    registry.remove_hook(name, recurse=False)
    if hasattr(module, "_diffusers_hook"):
        module._diffusers_hook.invalidate_child_registries_cache()


def attach_diffusers_cache(pipe: Any, apply_fn: Callable[[Any], None]) -> None:
    """``apply_fn(pipe)`` (a diffusers cache hook on ``pipe.transformer``) inside accel's loop context.

    diffusers' caches need a cache context that some pipelines (PixArt, SD3) never set; accel's context
    hook (``accel.apply(pipe)`` with no plugin, of negligible cost) provides one on every model.
    """
    accel.apply(pipe)
    apply_fn(pipe)
    pipe.transformer._diffusers_hook.invalidate_child_registries_cache()


def detach_diffusers_cache(pipe: Any) -> None:
    """Undo :func:`attach_diffusers_cache`."""
    remove_foreign_hooks(pipe.transformer)
    accel.remove(pipe)


def calibrate_mag_ratios(pipe: Any, call: dict) -> list[float]:
    """diffusers' MagCache magnitude ratios, calibrated on one generation ``pipe(**call)`` (seed 0)."""
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    config = MagCacheConfig(calibrate=True, num_inference_steps=call["num_inference_steps"])
    attach_diffusers_cache(pipe, lambda p: apply_mag_cache(p.transformer, config))
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), torch.no_grad():
            pipe(**call, generator=torch.Generator().manual_seed(0))
    finally:
        detach_diffusers_cache(pipe)
    lists = re.findall(r"\[([0-9eE.,\s+-]+)\]", buffer.getvalue())
    if not lists:
        raise RuntimeError("MagCache calibration printed no ratios")
    return [float(v) for v in lists[-1].split(",")]


# ---------------------------------------------------------------------------------------- setups against fewer steps
class Setup:
    """One way of running the pipeline; ``fresh_pipe`` (a loader) for peers that patch the pipeline so
    deeply that they need one nobody else touched."""

    def __init__(
        self,
        name: str,
        family: str,
        attach=None,
        detach=None,
        steps: int | None = None,
        fresh_pipe=None,
        whole_pipeline_flops: bool = False,
    ) -> None:
        self.name, self.family, self.steps, self.fresh_pipe = name, family, steps, fresh_pipe
        # count FLOPs over the whole pipeline call (then minus the text encoder and VAE share): for
        # peers whose patched forward recurses when a module hook is added
        self.whole_pipeline_flops = whole_pipeline_flops
        self.attach = attach or (lambda pipe: None)
        self.detach = detach or (lambda pipe: None)

    @contextlib.contextmanager
    def flops(self, pipe: Any) -> Iterator[dict[str, int]]:
        """Count the FLOPs run inside the block into ``["total"]``: the denoiser's, or the whole pipeline's."""
        if self.whole_pipeline_flops:
            with count_flops() as counted:
                yield counted
            return
        counted = {"total": 0}
        with ModuleFlops(denoiser(pipe)) as module:
            yield counted
        counted["total"] = module.total


def accel_setup(name: str, family: str, *configs: Any) -> Setup:
    """accel with ``configs``."""
    return Setup(name, family, lambda pipe: accel.apply(pipe, *configs), accel.remove)


def reference_setups(steps: Iterable[int]) -> list[Setup]:
    """The baseline, then the plain pipeline at each of ``steps`` sampling steps."""
    return [Setup("baseline", "baseline"), *(Setup(f"{k} steps", "fewer steps", steps=k) for k in steps)]


def diffusers_hook(name: str, family: str, apply_fn: Callable[[Any], None]) -> Setup:
    """A diffusers cache hook that ``apply_fn(pipe)`` installs (see :func:`attach_diffusers_cache`)."""
    return Setup(name, family, lambda pipe: attach_diffusers_cache(pipe, apply_fn), detach_diffusers_cache)


def mag_cache_setups(
    pipe: Any, call: dict, prompt: str, thresholds: tuple[float, ...], family: str, notes: dict[str, str]
) -> list[Setup]:
    """diffusers' MagCache at each threshold, with magnitude ratios calibrated here on ``prompt`` (a note
    instead where calibration fails)."""
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    try:
        ratios = calibrate_mag_ratios(pipe, {**call, "prompt": prompt, "output_type": "latent"})
    except Exception as exc:
        notes["MagCache"] = f"not run: {type(exc).__name__}: {exc}"
        return []
    steps = call["num_inference_steps"]
    return [
        diffusers_hook(
            f"MagCache t={t}",
            family,
            lambda p, t=t: apply_mag_cache(
                p.transformer,
                MagCacheConfig(threshold=t, num_inference_steps=steps, mag_ratios=ratios, max_skip_steps=3),
            ),
        )
        for t in thresholds
    ]


@torch.no_grad()
def generate(pipe: Any, setup: Setup, prompts: list[str], seeds: list[int], call: dict, batch: int = 30):
    """Images, FLOPs and wall seconds of ``setup`` over all prompts (``batch`` per call)."""
    kwargs = {**call, **({"num_inference_steps": setup.steps} if setup.steps else {})}
    setup.attach(pipe)
    images, flops, seconds = [], 0, 0.0
    try:
        for chunk, chunk_seeds in batches(prompts, seeds, batch):
            with setup.flops(pipe) as counted:
                start = time.perf_counter()
                images.append(sample(pipe, chunk, chunk_seeds, kwargs))
                seconds += time.perf_counter() - start
            flops += counted["total"]
    finally:
        setup.detach(pipe)
    return torch.cat(images), flops, seconds


def workload_parser(description: str, model: str, samples: int, out: str) -> argparse.ArgumentParser:
    """Arguments of a quality benchmark on one built-in model: ``--model``, ``--steps``, ``--samples``, ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=model)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--out", default=out)
    return parser


def evaluate(
    pipe: Any,
    setups: list[Setup],
    prompts: list[str],
    seeds: list[int],
    call: dict,
    domain: DomainMetrics,
    real: torch.Tensor,
    notes: dict,
    batch: int = 30,
) -> list[dict]:
    """Run every setup on the same prompts and seeds; the first setup is the reference."""
    rows, baseline, outside = [], None, None
    for setup in setups:
        if setup.whole_pipeline_flops and outside is None and baseline is not None:
            # the text encoder and VAE FLOPs of the same calls, to take off a whole-pipeline count
            whole = Setup("baseline, whole pipeline", "baseline", whole_pipeline_flops=True)
            outside = generate(pipe, whole, prompts, seeds, call, batch)[1] - baseline[1]
        try:
            images, flops, seconds = generate(
                setup.fresh_pipe() if setup.fresh_pipe else pipe, setup, prompts, seeds, call, batch
            )
        except Exception as exc:
            notes[setup.name] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            print(setup.name, "FAILED", exc, flush=True)
            continue
        if setup.whole_pipeline_flops:
            flops -= outside or 0
        if baseline is None:
            baseline = (images, flops, seconds)
        row = {
            "setup": setup.name,
            "family": setup.family,
            "denoiser_flops": flops,
            "flop_speedup": baseline[1] / flops,
            "wall_speedup": baseline[2] / seconds,
            "seconds": seconds,
            "psnr": float(psnr(images, baseline[0]).clamp(max=100).mean()),
            "ssim": float(ssim(images, baseline[0]).mean()),
            "fid": domain.fid(real, images),
            "alignment": float(domain.alignment(images, prompts).mean()),
        }
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def evaluate_and_report(work: tuple, setups: list[Setup], args: argparse.Namespace, caption: str, batch: int) -> None:
    """:func:`evaluate` ``setups`` on ``work`` (from :func:`workload`), then :func:`write_report` to ``args.out``."""
    pipe, call, prompts, seeds, domain, real = work
    notes: dict[str, str] = {}
    rows = evaluate(pipe, setups, prompts, seeds, call, domain, real, notes, batch)
    write_report(rows, notes, args.out, caption, {"model": args.model, "steps": args.steps, "samples": len(prompts)})


def compare_with_fewer_steps(rows: list[dict]) -> None:
    """Mark each accelerated setup with the PSNR and FID that fewer steps reach at its FLOP speedup
    (log-linear interpolation between the measured step counts, never extrapolated) and whether it
    beats them."""
    fewer = sorted([r for r in rows if r["family"] == "fewer steps"], key=lambda r: r["flop_speedup"])
    for row in rows:
        if row["family"] in ("baseline", "fewer steps") or len(fewer) < 2:
            continue
        x = math.log(row["flop_speedup"])
        xs = np.log([r["flop_speedup"] for r in fewer])
        if not xs[0] - 1e-9 <= x <= xs[-1] + 1e-9:
            continue  # outside the step counts measured: no comparison rather than an extrapolated one
        for metric, better in (("psnr", np.greater), ("fid", np.less)):
            reference = float(np.interp(x, xs, [r[metric] for r in fewer]))
            row[f"{metric}_of_fewer_steps_at_same_flops"] = reference
            row[f"beats_fewer_steps_{metric}"] = bool(better(row[metric], reference))


def write_report(rows: list[dict], notes: dict, out: str, caption: str, meta: dict) -> None:
    """Compare ``rows`` with fewer steps, then write ``out``.json, ``out``.md (table) and ``out``.png (quality
    vs FLOP speedup)."""
    compare_with_fewer_steps(rows)
    cells = []
    for r in sorted(rows, key=lambda r: (r["family"], r["flop_speedup"])):
        beats = (
            ""
            if "beats_fewer_steps_psnr" not in r
            else " / ".join("yes" if r[f"beats_fewer_steps_{m}"] else "no" for m in ("psnr", "fid"))
        )
        cells.append(
            [
                r["setup"],
                r["family"],
                f"{r['flop_speedup']:.2f}x",
                f"{r['wall_speedup']:.2f}x",
                f"{r['psnr']:.2f}",
                f"{r['ssim']:.3f}",
                f"{r['fid']:.2f}",
                f"{r['alignment']:.3f}",
                beats,
            ]
        )
    header = ["setup", "family", "FLOP speedup", "wall speedup", "PSNR dB", "SSIM", "FID", "alignment"]
    lines = [caption, "", *table([*header, "beats fewer steps (PSNR / FID)"], cells)]
    lines += [f"\n{name}: {note}" for name, note in notes.items()]
    write_results(out, {**meta, "notes": notes, "rows": rows}, lines)
    plot(rows, out + ".png", meta["model"])
    print("\n".join(lines))


def plot(rows: list[dict], path: str, model: str) -> None:
    """PSNR and FID of every family against the FLOP speedup."""
    from matplotlib import colormaps

    metrics = {"psnr": "PSNR to uncached output (dB)", "fid": "domain FID (lower is better)"}
    title = f"{model}: caching methods vs fewer steps (same prompts and seeds)"
    with speedup_figure(path, title, list(metrics.values()), (12, 4.8), 130) as axes:
        families = sorted({r["family"] for r in rows})
        for ax, metric in zip(axes, metrics):
            for i, family in enumerate(families):
                # a setting that never cached reproduces the baseline (PSNR capped at 100 dB): no point to plot
                pts = sorted(
                    (r["flop_speedup"], r[metric])
                    for r in rows
                    if r["family"] == family and not (metric == "psnr" and r["psnr"] >= 100)
                )
                if not pts:
                    continue
                style = "--o" if family == "fewer steps" else ("-s" if "searched" in family else "o")
                color = colormaps["tab10"](i % 10)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=family, color=color, ms=5)
