"""accel under ``torch.compile``: compiled baseline against compiled baseline plus one plugin, side by side.

Models (random weights, built from configs, no download), each driven by its stock diffusers pipeline
with classifier-free guidance and ``output_type="latent"`` (the denoising loop, no VAE):

* ``unet``: the SD 1.5 U-Net architecture at 64x64 latents (DDIM);
* ``pixart``: the PixArt-alpha transformer at full width (1152, 16 heads), ``--layers`` blocks, 64x64 latents;
* ``sd3``: the SD3 transformer at full width (1536, 24 heads), ``--layers`` blocks, 64x64 latents.

Settings: DeepCache N=3 (U-Net); BlockCache FORA N=2 (PixArt); RAS 0.5 (SD3); AG with CFG dropped from
the middle step (every model; random weights give no meaningful similarity test); and diffusers'
FirstBlockCache and TaylorSeer (DiTs). Every denoiser is compiled whole (``module.compile``) with the
``--backend`` (inductor by default) after the plugin is applied; a plugin copy and the baseline are
timed in interleaved repeats after two warm-up calls. The FLOP ratio is counted (eager, FlopCounterMode)
on the same calls. The target of the runtime issue: compiled speedup >= 0.85 x FLOP ratio.

    python -m benchmarks.compile --out benchmarks/results/compile            # all models
    python -m benchmarks.compile --models pixart --steps 10 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable
from typing import Any

import torch

import accel
from accel.metrics.cost import ModuleFlops, measure_interleaved
from accel.pipelines.testing import tiny_vae  # 8x downscale like SD; only its scale factor is used

from .common import denoiser, table, without_text_encoders

LATENT = 64


def unet_pipeline() -> tuple[Any, dict]:
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=LATENT, cross_attention_dim=768)  # the SD 1.x defaults
    pipe = without_text_encoders(
        StableDiffusionPipeline,
        vae=tiny_vae(levels=4),
        unet=unet.eval(),
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    g = torch.Generator().manual_seed(0)
    inputs = dict(
        prompt_embeds=torch.randn(1, 77, 768, generator=g),
        negative_prompt_embeds=torch.randn(1, 77, 768, generator=g),
        height=LATENT * 8,
        width=LATENT * 8,
    )
    return pipe, inputs


def pixart_pipeline(layers: int) -> tuple[Any, dict]:
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    transformer = PixArtTransformer2DModel(sample_size=LATENT, num_layers=layers, caption_channels=4096)
    pipe = without_text_encoders(
        PixArtAlphaPipeline,
        vae=tiny_vae(levels=4),
        transformer=transformer.eval(),
        scheduler=DPMSolverMultistepScheduler(),
    )
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(1, 120)
    inputs = dict(
        prompt_embeds=torch.randn(1, 120, 4096, generator=g),
        negative_prompt_embeds=torch.randn(1, 120, 4096, generator=g),
        prompt_attention_mask=mask,
        negative_prompt_attention_mask=mask,
        negative_prompt=None,
        height=LATENT * 8,
        width=LATENT * 8,
        use_resolution_binning=False,
    )
    return pipe, inputs


def sd3_pipeline(layers: int) -> tuple[Any, dict]:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    transformer = SD3Transformer2DModel(
        sample_size=LATENT, num_layers=layers, num_attention_heads=24, caption_projection_dim=1536
    )
    pipe = without_text_encoders(
        StableDiffusion3Pipeline,
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(levels=4),
    )
    g = torch.Generator().manual_seed(0)
    pooled = torch.randn(1, 2048, generator=g)
    inputs = dict(
        prompt_embeds=torch.randn(1, 154, 4096, generator=g),
        negative_prompt_embeds=torch.randn(1, 154, 4096, generator=g),
        pooled_prompt_embeds=pooled,
        negative_pooled_prompt_embeds=pooled * 0.5,
        height=LATENT * 8,
        width=LATENT * 8,
    )
    return pipe, inputs


def _diffusers_cache(name: str) -> Callable[[torch.nn.Module], None]:
    def apply(module: torch.nn.Module) -> None:
        from diffusers.hooks import (
            FirstBlockCacheConfig,
            TaylorSeerCacheConfig,
            apply_first_block_cache,
            apply_taylorseer_cache,
        )

        if name == "FirstBlockCache":
            apply_first_block_cache(module, FirstBlockCacheConfig(threshold=0.2))
        else:
            blocks = r"^transformer_blocks\.\d+\.(attn|attn1|attn2|ff|ff_context)$"  # the defaults miss PixArt/SD3
            config = TaylorSeerCacheConfig(
                cache_interval=2, disable_cache_before_step=2, max_order=1, cache_identifiers=[blocks]
            )
            apply_taylorseer_cache(module, config)

    return apply


def settings(model: str, steps: int) -> dict[str, tuple[list, Callable | None]]:
    """name -> (accel configs, a diffusers cache to apply to the denoiser or None)."""
    ag = accel.AdaptiveGuidanceConfig(threshold=2.0, max_step=steps // 2)  # CFG off from the middle step
    if model == "unet":
        return {"DeepCache N=3": ([accel.DeepCacheConfig(interval=3)], None), "AG": ([ag], None)}
    own = (
        {"BlockCache FORA N=2": ([accel.BlockCacheConfig(schedule="fora", interval=2)], None)}
        if model == "pixart"
        else {"RAS 0.5": ([accel.RASConfig(sample_ratio=0.5)], None)}
    )
    peers = {name: ([], _diffusers_cache(name)) for name in ("FirstBlockCache", "TaylorSeer")}
    return {**own, "AG": ([ag], None), **peers}


def build(model: str, layers: int) -> tuple[Any, dict]:
    if model == "unet":
        return unet_pipeline()
    return pixart_pipeline(layers) if model == "pixart" else sd3_pipeline(layers)


def prepared(pipe: Any, configs: list, diffusers_cache: Callable | None) -> Any:
    """A copy of ``pipe`` with the setting attached (the accel context always: diffusers' caches need it)."""
    twin = copy.copy(pipe)
    for name in ("unet", "transformer"):
        if getattr(pipe, name, None) is not None:
            module = copy.deepcopy(getattr(pipe, name))
            setattr(twin, name, module)
            twin.register_modules(**{name: module})
    twin.scheduler = copy.deepcopy(pipe.scheduler)
    twin.register_modules(scheduler=twin.scheduler)
    accel.apply(twin, *configs)
    if diffusers_cache is not None:  # inside accel's context hook, which gives diffusers' caches the step
        diffusers_cache(denoiser(twin))
        denoiser(twin)._diffusers_hook.invalidate_child_registries_cache()
    return twin


def run_model(model: str, args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    pipe, inputs = build(model, args.layers)
    pipe.set_progress_bar_config(disable=True)
    call = dict(inputs, num_inference_steps=args.steps, guidance_scale=4.5, output_type="latent")

    def runner(p: Any) -> Callable[[], Any]:
        return lambda: p(**call, generator=torch.Generator().manual_seed(0)).images

    baseline = prepared(pipe, [], None)
    with ModuleFlops(denoiser(baseline)) as base_flops, torch.no_grad():
        runner(baseline)()
    started = time.perf_counter()
    denoiser(baseline).compile(backend=args.backend)
    rows = []
    for name, (configs, diffusers_cache) in settings(model, args.steps).items():
        twin = prepared(pipe, configs, diffusers_cache)
        try:
            with ModuleFlops(denoiser(twin)) as flops, torch.no_grad():
                runner(twin)()
        except Exception as exc:  # a peer that fails on this model is reported, not fatal
            row = {"model": model, "setting": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
            print(json.dumps(row), flush=True)
            rows.append(row)
            continue
        denoiser(twin).compile(backend=args.backend)
        compile_start = time.perf_counter()
        with torch.no_grad():
            for _ in range(2):
                runner(twin)()
                runner(baseline)()
        warmup_s = time.perf_counter() - compile_start
        with torch.no_grad():
            lat = measure_interleaved({"base": runner(baseline), "plugin": runner(twin)}, 0, args.repeats)
        flop_ratio = base_flops.total / max(flops.total, 1)
        wall_ratio = lat["base"].median / lat["plugin"].median
        row = {
            "model": model,
            "setting": name,
            "steps": args.steps,
            "backend": args.backend,
            "flop_ratio": round(flop_ratio, 3),
            "compiled_wall_ratio": round(wall_ratio, 3),
            "fraction_of_flop_ratio": round(wall_ratio / flop_ratio, 3),
            "baseline_s": round(lat["base"].median, 3),
            "plugin_s": round(lat["plugin"].median, 3),
            "spread_p10_p90": [round(lat["plugin"].p10, 3), round(lat["plugin"].p90, 3)],
            "warmup_s": round(warmup_s, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        del twin
    print(f"{model}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def write_table(rows: list[dict], path: str) -> None:
    cells = [
        [r["model"], r["setting"], f"failed: {r['error'][:80]}", "", "", "", ""]
        if "error" in r
        else [
            r["model"],
            r["setting"],
            f"{r['flop_ratio']:.2f}x",
            f"{r['compiled_wall_ratio']:.2f}x",
            f"{r['fraction_of_flop_ratio']:.2f}",
            f"{r['baseline_s']:.2f}",
            f"{r['plugin_s']:.2f}",
        ]
        for r in rows
    ]
    header = ["model", "setting", "FLOP ratio", "compiled wall ratio", "fraction of FLOP ratio", "baseline s"]
    with open(path, "w") as f:
        f.write("\n".join(table([*header, "plugin s"], cells)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["unet", "pixart", "sd3"], choices=["unet", "pixart", "sd3"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--layers", type=int, default=4, help="transformer blocks of the DiTs (full width)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--out", default="benchmarks/results/compile")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    previous = json.load(open(path)) if os.path.exists(path) else []
    rows = [r for r in previous if r["model"] not in args.models]  # keep the other models' rows
    for model in args.models:
        rows.extend(run_model(model, args))
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(rows, f, indent=1)
        write_table(rows, os.path.join(args.out, "results.md"))


if __name__ == "__main__":
    main()
