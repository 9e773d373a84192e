"""DiT caching on the proving-ground PixArt: searched schedules vs the peers, on the same prompts and seeds.

Setups: fewer sampling steps, FORA every-N (accel BlockCache), schedules from ``accel search-cache``
(every JSON in ``--front``), diffusers' FirstBlockCache, PyramidAttentionBroadcast, FasterCache,
TaylorSeer and MagCache (calibrated here), and cache-dit's DBCache (``pip install cache-dit``).
diffusers' caches need a cache context that PixArtAlphaPipeline never sets; accel's context hook
(``accel.apply(pipe)`` with no plugin) provides it, which is also how they compose with accel.

Reports per setup: denoiser FLOPs (counted) and the FLOP speedup, wall-clock speedup, PSNR/SSIM to the
uncached output, domain FID and prompt alignment, and whether it beats fewer steps at equal FLOPs.

    python benchmarks/dit_caching.py --front runs/search-pixart/front --out benchmarks/results/dit_caching
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import math
import os
import re
import time

import numpy as np
import torch

import accel
from accel.evaluation.prompts import builtin_prompts
from accel.metrics.cost import ModuleFlops, count_flops
from accel.metrics.domain import DomainMetrics
from accel.metrics.fidelity import psnr, ssim
from accel.pipelines import load
from accel.pipelines.builtin import BUILTIN_MODELS


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


def diffusers_hook(name: str, family: str, apply_fn) -> Setup:
    def attach(pipe):
        accel.apply(pipe)  # the denoising context that diffusers' caches need on PixArt
        apply_fn(pipe)
        pipe.transformer._diffusers_hook.invalidate_child_registries_cache()

    def detach(pipe):
        remove_foreign_hooks(pipe.transformer)
        accel.remove(pipe)

    return Setup(name, family, attach, detach)


def current_timestep(pipe) -> int:
    """The timestep of the denoiser call in flight, from accel's context (PixArt keeps none of its own)."""
    info = accel.get_handle(pipe).context.current
    return int(torch.as_tensor(info.timestep).flatten()[0]) if info is not None and info.timestep is not None else 999


def calibrate_mag_ratios(pipe, call: dict, prompt: str) -> list[float]:
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    accel.apply(pipe)
    apply_mag_cache(pipe.transformer, MagCacheConfig(calibrate=True, num_inference_steps=call["num_inference_steps"]))
    pipe.transformer._diffusers_hook.invalidate_child_registries_cache()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), torch.no_grad():
        pipe(prompt=prompt, generator=torch.Generator().manual_seed(0), output_type="latent", **call)
    remove_foreign_hooks(pipe.transformer)
    accel.remove(pipe)
    lists = re.findall(r"\[([0-9eE.,\s+-]+)\]", buffer.getvalue())
    return [float(v) for v in lists[-1].split(",")] if lists else []


def mag_cache_setups(
    pipe, call: dict, prompt: str, thresholds: tuple[float, ...], family: str, notes: dict[str, str]
) -> list[Setup]:
    """diffusers' MagCache at each threshold, with magnitude ratios calibrated here on ``prompt`` (a note
    instead where calibration fails)."""
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    try:
        ratios = calibrate_mag_ratios(pipe, call, prompt)
        if not ratios:
            raise RuntimeError("MagCache calibration printed no ratios")
    except Exception as exc:
        notes["MagCache"] = f"not run: {type(exc).__name__}: {exc}"
        return []
    return [
        diffusers_hook(
            f"MagCache t={t}",
            family,
            lambda p, t=t: apply_mag_cache(
                p.transformer,
                MagCacheConfig(
                    threshold=t,
                    num_inference_steps=call["num_inference_steps"],
                    mag_ratios=ratios,
                    max_skip_steps=3,
                ),
            ),
        )
        for t in thresholds
    ]


def peer_setups(pipe, call: dict, prompt: str, model: str) -> tuple[list[Setup], dict[str, str]]:
    from diffusers.hooks import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        PyramidAttentionBroadcastConfig,
        TaylorSeerCacheConfig,
        apply_faster_cache,
        apply_first_block_cache,
        apply_pyramid_attention_broadcast,
        apply_taylorseer_cache,
    )

    setups, notes = [], {}
    for t in (0.05, 0.1, 0.2, 0.3):
        setups.append(
            diffusers_hook(
                f"FirstBlockCache t={t}",
                "FirstBlockCache",
                lambda p, t=t: apply_first_block_cache(p.transformer, FirstBlockCacheConfig(threshold=t)),
            )
        )
    for skip in (2, 3):
        setups.append(
            diffusers_hook(
                f"PAB skip={skip}",
                "PAB",
                lambda p, skip=skip: apply_pyramid_attention_broadcast(
                    p.transformer,
                    PyramidAttentionBroadcastConfig(
                        spatial_attention_block_skip_range=skip,
                        cross_attention_block_skip_range=skip + 1,
                        spatial_attention_timestep_skip_range=(100, 950),
                        cross_attention_timestep_skip_range=(100, 950),
                        current_timestep_callback=lambda: current_timestep(p),
                    ),
                ),
            )
        )
    setups.append(
        diffusers_hook(
            "FasterCache",
            "FasterCache",
            lambda p: apply_faster_cache(
                p.transformer,
                FasterCacheConfig(
                    spatial_attention_block_skip_range=2,
                    spatial_attention_timestep_skip_range=(-1, 900),
                    unconditional_batch_skip_range=2,
                    unconditional_batch_timestep_skip_range=(-1, 900),
                    attention_weight_callback=lambda _: 0.5,
                    tensor_format="BCHW",
                    is_guidance_distilled=False,
                    current_timestep_callback=lambda: current_timestep(p),
                ),
            ),
        )
    )
    for interval in (2, 3):
        setups.append(
            diffusers_hook(
                f"TaylorSeer N={interval}",
                "TaylorSeer",
                lambda p, n=interval: apply_taylorseer_cache(
                    p.transformer,
                    TaylorSeerCacheConfig(
                        cache_interval=n,
                        disable_cache_before_step=2,
                        max_order=1,
                        taylor_factors_dtype=torch.float32,
                        cache_identifiers=[r"^transformer_blocks\.\d+\.(attn1|attn2|ff)$"],
                    ),
                ),
            )
        )
    setups += mag_cache_setups(pipe, call, prompt, (0.04, 0.1, 0.2), "MagCache", notes)
    try:
        import cache_dit
        from cache_dit import DBCacheConfig

        for t in (0.08, 0.16, 0.3):
            setups.append(
                Setup(
                    f"cache-dit DBCache F1B0 t={t}",
                    "cache-dit DBCache",
                    lambda p, t=t: cache_dit.enable_cache(
                        p,
                        cache_config=DBCacheConfig(
                            Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=t, max_warmup_steps=2
                        ),
                    ),
                    lambda p: cache_dit.disable_cache(p),
                    fresh_pipe=lambda: _fresh(model),
                    whole_pipeline_flops=True,
                )
            )
    except Exception as exc:
        notes["cache-dit"] = f"not run: {type(exc).__name__}: {exc}"
    return setups, notes


def workload(model: str, steps: int, samples: int, seed_base: int, real_seed: int):
    """A built-in model's pipeline, call arguments, ``samples`` prompts with their seeds, and a real set of the
    same size with its domain metrics: what every quality benchmark here starts from."""
    pipe = _fresh(model)
    call = dict(BUILTIN_MODELS[model].call_defaults, num_inference_steps=steps)
    base = builtin_prompts(model)
    prompts = [base[i % len(base)] for i in range(samples)]
    seeds = [seed_base + i for i in range(samples)]
    domain = DomainMetrics(BUILTIN_MODELS[model].dataset)
    return pipe, call, prompts, seeds, domain, domain.real_samples(samples, seed=real_seed)


def _fresh(model: str):
    pipe = load(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(pipe, setup: Setup, prompts: list[str], seeds: list[int], call: dict, batch: int = 30):
    """Images, denoiser FLOPs and wall seconds of ``setup`` over all prompts (``batch`` per call)."""
    kwargs = {**call, **({"num_inference_steps": setup.steps} if setup.steps else {})}
    setup.attach(pipe)
    images, flops, seconds = [], 0, 0.0
    try:
        for i in range(0, len(prompts), batch):
            counter = (
                count_flops()
                if setup.whole_pipeline_flops
                else ModuleFlops(getattr(pipe, "unet", None) or pipe.transformer)
            )
            with counter as counted:
                start = time.perf_counter()
                out = pipe(
                    prompt=prompts[i : i + batch],
                    generator=[torch.Generator().manual_seed(s) for s in seeds[i : i + batch]],
                    output_type="pt",
                    **kwargs,
                )
                seconds += time.perf_counter() - start
            flops += counted["total"] if setup.whole_pipeline_flops else counted.total
            images.append(out.images.float().clamp(0, 1))
    finally:
        setup.detach(pipe)
    return torch.cat(images), flops, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="pixart-shapes")
    parser.add_argument(
        "--front", default=None, help="folder of searched schedules (accel search-cache --out DIR: DIR/front)"
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per prompt")
    parser.add_argument("--out", default="benchmarks/results/dit_caching")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="rerun only these families (plus baseline and fewer steps), keeping the others' rows",
    )
    args = parser.parse_args()

    pipe = load(args.model)
    pipe.set_progress_bar_config(disable=True)
    call = dict(BUILTIN_MODELS[args.model].call_defaults)
    call["num_inference_steps"] = args.steps
    base_prompts = builtin_prompts(args.model)
    prompts = [p for _ in range(args.seeds) for p in base_prompts]
    seeds = [50_000 + i for i in range(len(prompts))]
    domain = DomainMetrics(BUILTIN_MODELS[args.model].dataset)
    real = domain.real_samples(len(prompts), seed=3)

    setups = [Setup("baseline", "baseline")]
    setups += [Setup(f"{k} steps", "fewer steps", steps=k) for k in (16, 14, 12, 10, 8, 7, 6, 5)]
    for n in (2, 3, 4):
        setups.append(
            Setup(
                f"FORA N={n}",
                "FORA (accel BlockCache)",
                lambda p, n=n: accel.apply(p, accel.BlockCacheConfig(interval=n)),
                lambda p: accel.remove(p),
            )
        )
    for path in sorted(glob.glob(os.path.join(args.front, "*.json"))) if args.front else []:
        setups.append(
            Setup(
                f"searched {os.path.basename(path)[:-5]}",
                "accel searched schedule",
                lambda p, path=path: accel.apply(p, accel.BlockCacheConfig(schedule=path)),
                lambda p: accel.remove(p),
            )
        )
    peers, notes = peer_setups(pipe, call, prompts[0], args.model)
    setups += peers
    if args.only:
        setups = [s for s in setups if s.family in ("baseline", "fewer steps") or s.family in args.only]

    rows = evaluate(pipe, setups, prompts, seeds, call, domain, real, notes)
    if args.only and os.path.exists(args.out + ".json"):  # keep the other families' rows of the earlier run
        earlier = json.load(open(args.out + ".json"))
        fresh = {r["setup"] for r in rows}
        rows += [r for r in earlier["rows"] if r["setup"] not in fresh]
        notes = {
            **{
                k: v
                for k, v in earlier["notes"].items()
                if k not in fresh and not any(k.startswith(f) for f in args.only)
            },
            **notes,
        }
    compare_with_fewer_steps(rows)
    write_report(
        rows,
        notes,
        args.out,
        f"Caching on `{args.model}` ({args.steps} steps, {len(prompts)} samples, same prompts "
        "and seeds; FLOPs = denoiser FLOPs counted while it runs; PSNR/SSIM to the uncached output; FID/alignment "
        "from the domain classifier).",
        {"model": args.model, "steps": args.steps, "samples": len(prompts)},
    )


def evaluate(
    pipe,
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
    """``out``.json, ``out``.md (table) and ``out``.png (quality vs FLOP speedup)."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump({**meta, "notes": notes, "rows": rows}, f, indent=2)
    lines = [
        caption,
        "",
        "| setup | family | FLOP speedup | wall speedup | PSNR dB | SSIM | FID | alignment | beats fewer steps (PSNR "
        "/ FID) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["family"], r["flop_speedup"])):
        beats = (
            ""
            if "beats_fewer_steps_psnr" not in r
            else " / ".join("yes" if r[f"beats_fewer_steps_{m}"] else "no" for m in ("psnr", "fid"))
        )
        lines.append(
            f"| {r['setup']} | {r['family']} | {r['flop_speedup']:.2f}x | {r['wall_speedup']:.2f}x | {r['psnr']:.2f} "
            "| "
            f"{r['ssim']:.3f} | {r['fid']:.2f} | {r['alignment']:.3f} | {beats} |"
        )
    for name, note in notes.items():
        lines.append(f"\n{name}: {note}")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(rows, out + ".png", meta["model"])
    print("\n".join(lines))


def plot(rows: list[dict], path: str, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    families = sorted({r["family"] for r in rows})
    for ax, metric, label in (
        (axes[0], "psnr", "PSNR to uncached output (dB)"),
        (axes[1], "fid", "domain FID (lower is better)"),
    ):
        for i, family in enumerate(families):
            # a setting that never cached reproduces the baseline (PSNR capped at 100 dB): no point to plot
            pts = sorted(
                [
                    (r["flop_speedup"], r[metric])
                    for r in rows
                    if r["family"] == family and not (metric == "psnr" and r["psnr"] >= 100)
                ]
            )
            if not pts:
                continue
            style = "--o" if family == "fewer steps" else ("-s" if "searched" in family else "o")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=family, color=plt.cm.tab10(i % 10), ms=5)
        ax.set_xlabel("denoiser FLOP speedup (x)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{model}: caching methods vs fewer steps (same prompts and seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
