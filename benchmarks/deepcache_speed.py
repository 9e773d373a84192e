"""DeepCache speed on an SD 1.5-architecture U-Net (random weights, 64x64 latents), side by side.

Every configuration runs the same StableDiffusionPipeline denoising loop (prompt embeddings in,
latents out, so only the U-Net loop is timed), interleaved over repeats so machine drift hits all
alike. Reports the wall-clock speedup next to the FLOP speedup (FLOPs counted while the U-Net runs,
``torch.utils.flop_counter``) and the fraction of the FLOP ideal reached. Peers on the same U-Net:
the official ``DeepCache`` package (``pip install DeepCache``) and ToMe for SD (``pip install tomesd``),
where they run with the installed diffusers (the table says so where they do not).

    python -m benchmarks.deepcache_speed --steps 10 --repeats 2
    python -m benchmarks.deepcache_speed --profile   # where a cached step's time goes

``--profile`` times one full U-Net call and one cached (shallow) call at each branch with
``torch.profiler`` and splits their CPU time into the operators the FLOP counter counts (matmuls,
convolutions, attention) and everything else (norms, activations, adds, copies): the share of the
latter on the shallow path is what keeps the wall clock below the FLOP ideal at large intervals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

import accel
from accel.metrics.cost import ModuleFlops, measure_interleaved
from accel.pipelines.testing import tiny_vae

from .common import without_text_encoders

SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)


def build_pipeline():
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    pipe = without_text_encoders(
        StableDiffusionPipeline,
        vae=tiny_vae(levels=4),
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Setup:
    """A named way to accelerate the pipeline: ``attach()`` before, ``detach()`` after each timed run."""

    def __init__(self, name: str, attach, detach) -> None:
        self.name, self.attach, self.detach = name, attach, detach


def setups(pipe, intervals: list[int]) -> tuple[list[Setup], dict[str, str]]:
    out = [Setup("baseline", lambda: None, lambda: None)]
    for n in intervals:
        out.append(
            Setup(
                f"accel DeepCache N={n}",
                lambda n=n: accel.apply(pipe, accel.DeepCacheConfig(interval=n, branch=0)),
                lambda: accel.remove(pipe),
            )
        )
    for n in [n for n in intervals if n >= 5]:  # what forecasting the deep features costs on the clock
        out.append(
            Setup(
                f"accel DeepCache N={n} + forecast order 1",
                lambda n=n: accel.apply(pipe, accel.DeepCacheConfig(interval=n, branch=0, forecast_order=1)),
                lambda: accel.remove(pipe),
            )
        )
    notes = {}
    try:
        from DeepCache import DeepCacheSDHelper

        helper = DeepCacheSDHelper(pipe=pipe)
        for n in intervals:

            def on(n=n):
                helper.set_params(cache_interval=n, cache_branch_id=0)
                helper.enable()

            out.append(Setup(f"DeepCache package N={n}", on, helper.disable))
    except Exception as exc:  # not installed, or incompatible with this diffusers
        notes["DeepCache package"] = f"not run: {type(exc).__name__}: {exc}"
    try:
        import tomesd

        out.append(
            Setup("tomesd ratio=0.5", lambda: tomesd.apply_patch(pipe, ratio=0.5), lambda: tomesd.remove_patch(pipe))
        )
    except Exception as exc:
        notes["tomesd"] = f"not run: {type(exc).__name__}: {exc}"
    return out, notes


FLOP_OPS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "conv", "convolution", "scaled_dot_product")


def _split_time(prof) -> tuple[float, float]:
    """Self CPU seconds of the operators the FLOP counter counts, and of all other operators."""
    counted = other = 0.0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        name = event.key[len("aten::") :]
        if any(name == op or name.startswith(op + "_") or name.startswith("_" + op) for op in FLOP_OPS):
            counted += event.self_cpu_time_total / 1e6
        elif name.startswith("_convolution") or "conv" in name or "attention" in name:
            counted += event.self_cpu_time_total / 1e6
        else:
            other += event.self_cpu_time_total / 1e6
    return counted, other


def profile_calls(pipe, kwargs: dict, branches: list[int]) -> list[str]:
    """One full and one cached U-Net call per branch: wall time, FLOPs and the split of their CPU time."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    def one_step(config, flops: bool):
        """Per U-Net call of a 2-step run: its FLOPs (``flops``), or its seconds and time split (profiled)."""
        calls = []

        def pre(module, args):
            meter = FlopCounterMode(display=False) if flops else profile(activities=[ProfilerActivity.CPU])
            module._accel_meter = meter
            module._accel_meter.__enter__()
            module._accel_start = time.perf_counter()

        def post(module, args, output):
            seconds = time.perf_counter() - module._accel_start
            module._accel_meter.__exit__(None, None, None)
            meter = module._accel_meter
            calls.append(meter.get_total_flops() if flops else (seconds, *_split_time(meter)))

        handles = [pipe.unet.register_forward_pre_hook(pre), pipe.unet.register_forward_hook(post)]
        if config is not None:
            accel.apply(pipe, config)
        try:
            with torch.no_grad():
                pipe(generator=torch.Generator().manual_seed(0), **{**kwargs, "num_inference_steps": 2})
        finally:
            if config is not None:
                accel.remove(pipe)
            for h in handles:
                h.remove()
        return calls[1]  # the second call: full without DeepCache, cached with it

    def measure(config):
        one_step(config, flops=False)  # warm-up
        return (one_step(config, flops=True), *one_step(config, flops=False))

    full_flops, *full = measure(None)
    lines = [
        "| call | seconds | share of a full call's time | share of its FLOPs | matmul/conv/attention s | other s |",
        "|---|---|---|---|---|---|",
        f"| full U-Net | {full[0]:.2f} | 1.00 | 1.00 | {full[1]:.2f} | {full[2]:.2f} |",
    ]
    for branch in branches:
        flops, *shallow = measure(accel.DeepCacheConfig(interval=2, branch=branch))
        lines.append(
            f"| cached step, branch {branch} | {shallow[0]:.2f} | {shallow[0] / full[0]:.3f} | "
            f"{flops / full_flops:.3f} | {shallow[1]:.2f} | {shallow[2]:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--intervals", type=int, nargs="+", default=[2, 3, 5, 10])
    parser.add_argument("--guidance", type=float, default=1.0, help="1.0: no CFG (batch 1); >1: CFG batch 2")
    parser.add_argument("--out", default="benchmarks/results/deepcache_speed")
    parser.add_argument("--profile", action="store_true", help="split one full and one cached call's time instead")
    args = parser.parse_args()

    pipe = build_pipeline()
    embeds = torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(0))
    kwargs = dict(
        prompt_embeds=embeds,
        negative_prompt_embeds=torch.zeros_like(embeds),
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        height=512,
        width=512,
        output_type="latent",
    )
    if args.profile:
        lines = profile_calls(pipe, kwargs, [0, 1, 3])
        header = (
            f"Where a DeepCache step's time goes: SD 1.5 U-Net (random weights, 64x64 latents, guidance "
            f"{args.guidance:g}, fp32, {torch.get_num_threads()} CPU threads), one call each after a warm-up, CPU "
            "self time by operator; FLOPs counted in a separate run."
        )
        with open(args.out + "_profile.md", "w") as f:
            f.write(header + "\n\n" + "\n".join(lines) + "\n")
        print(header, *lines, sep="\n")
        return
    run_setups, notes = setups(pipe, args.intervals)
    results = {}
    outputs = {}

    def runner(setup: Setup):
        def run():
            setup.attach()
            try:
                with torch.no_grad():
                    outputs[setup.name] = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
            finally:
                setup.detach()

        return run

    for setup in run_setups:  # FLOPs, counted once per setup (not during timing)
        setup.attach()
        try:
            with torch.no_grad(), ModuleFlops(pipe.unet) as flops:
                pipe(generator=torch.Generator().manual_seed(0), **kwargs)
        except Exception as exc:
            notes[setup.name] = f"failed: {type(exc).__name__}: {exc}"
        finally:
            setup.detach()
        results[setup.name] = {"unet_flops": flops.total, "unet_calls": flops.calls}
    timed = [s for s in run_setups if s.name not in notes]
    latency = measure_interleaved({s.name: runner(s) for s in timed}, warmup=0, repeats=args.repeats)
    base = results["baseline"]
    for setup in timed:
        r = results[setup.name]
        r["seconds_median"] = latency[setup.name].median
        r["seconds_runs"] = latency[setup.name].runs
        r["flop_speedup"] = base["unet_flops"] / r["unet_flops"]
        r["wall_speedup"] = latency["baseline"].median / latency[setup.name].median
        r["fraction_of_flop_ideal"] = r["wall_speedup"] / r["flop_speedup"]
        r["max_abs_diff_to_baseline"] = float((outputs[setup.name] - outputs["baseline"]).abs().max())
    for n in args.intervals:  # the same branch and interval must give the package's output, bit for bit
        ours, theirs = f"accel DeepCache N={n}", f"DeepCache package N={n}"
        if ours in outputs and theirs in outputs:
            diff = float((outputs[ours] - outputs[theirs]).abs().max())
            notes[f"accel vs package N={n}"] = f"largest latent difference {diff:.3g}"
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    meta = {
        "steps": args.steps,
        "repeats": args.repeats,
        "guidance": args.guidance,
        "device": platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "notes": notes,
        "time": time.strftime("%Y-%m-%d %H:%M"),
    }
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    lines = [
        f"DeepCache on an SD 1.5 U-Net (random weights, 64x64 latents, {args.steps} DDIM steps, guidance "
        f"{args.guidance:g}, "
        f"fp32, {torch.get_num_threads()} CPU threads, median of {args.repeats} interleaved runs).",
        "",
        "Both DeepCache implementations at branch 0 (the official numbering); FLOPs include attention.",
        "",
        "| setup | U-Net calls | FLOP speedup | wall-clock speedup | fraction of FLOP ideal | seconds | "
        "max diff to baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for setup in timed:
        r = results[setup.name]
        lines.append(
            f"| {setup.name} | {r['unet_calls']} | {r['flop_speedup']:.2f}x | {r['wall_speedup']:.2f}x | "
            f"{r['fraction_of_flop_ideal']:.2f} | {r['seconds_median']:.1f} | {r['max_abs_diff_to_baseline']:.3g} |"
        )
    for name, note in notes.items():
        lines.append(f"\n{name}: {note}")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
