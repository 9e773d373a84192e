"""DiT caching on the proving-ground PixArt: searched schedules vs the peers, on the same prompts and seeds.

Setups: fewer sampling steps, FORA every-N (accel BlockCache), schedules from ``accel search-cache``
(every JSON in ``--front``), diffusers' FirstBlockCache, PyramidAttentionBroadcast, FasterCache,
TaylorSeer and MagCache (calibrated here), and cache-dit's DBCache (``pip install cache-dit``).
diffusers' caches need a cache context that PixArtAlphaPipeline never sets; accel's context hook
(``accel.apply(pipe)`` with no plugin) provides it, which is also how they compose with accel.

Reports per setup: denoiser FLOPs (counted) and the FLOP speedup, wall-clock speedup, PSNR/SSIM to the
uncached output, domain FID and prompt alignment, and whether it beats fewer steps at equal FLOPs.

    python -m benchmarks.dit_caching --front runs/search-pixart/front --out benchmarks/results/dit_caching
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import torch

import accel
from accel.evaluation.prompts import builtin_prompts

from .common import (
    Setup,
    accel_setup,
    diffusers_hook,
    evaluate,
    load_quiet,
    mag_cache_setups,
    reference_setups,
    workload,
    write_report,
)


def current_timestep(pipe) -> int:
    """The timestep of the denoiser call in flight, from accel's context (PixArt keeps none of its own)."""
    info = accel.get_handle(pipe).context.current
    return int(torch.as_tensor(info.timestep).flatten()[0]) if info is not None and info.timestep is not None else 999


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
                    fresh_pipe=lambda: load_quiet(model),
                    whole_pipeline_flops=True,
                )
            )
    except Exception as exc:
        notes["cache-dit"] = f"not run: {type(exc).__name__}: {exc}"
    return setups, notes


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

    samples = len(builtin_prompts(args.model)) * args.seeds
    pipe, call, prompts, seeds, domain, real = workload(args.model, args.steps, samples, 50_000, 3)

    setups = reference_setups((16, 14, 12, 10, 8, 7, 6, 5))
    for n in (2, 3, 4):
        setups.append(accel_setup(f"FORA N={n}", "FORA (accel BlockCache)", accel.BlockCacheConfig(interval=n)))
    for path in sorted(glob.glob(os.path.join(args.front, "*.json"))) if args.front else []:
        name = f"searched {os.path.basename(path)[:-5]}"
        setups.append(accel_setup(name, "accel searched schedule", accel.BlockCacheConfig(schedule=path)))
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
    write_report(
        rows,
        notes,
        args.out,
        f"Caching on `{args.model}` ({args.steps} steps, {len(prompts)} samples, same prompts "
        "and seeds; FLOPs = denoiser FLOPs counted while it runs; PSNR/SSIM to the uncached output; FID/alignment "
        "from the domain classifier).",
        {"model": args.model, "steps": args.steps, "samples": len(prompts)},
    )


if __name__ == "__main__":
    main()
