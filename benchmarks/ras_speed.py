"""RAS speed on an SD3-medium or Lumina-Next-SFT-2B architecture (random weights) at 1024x1024 (4096 tokens).

Runs the stock StableDiffusion3Pipeline or LuminaPipeline (``--family sd3|lumina``; prompt
embeddings in, latents out) for 2 steps, dense and with RAS (step 0 dense, step 1 at ``--ratio``),
timing every denoiser call and counting its FLOPs.
A full 28-step generation at the paper's settings (4 dense warm-up steps, dense error-reset steps
12 and 20, ratio 0.25 elsewhere) is then composed from the measured per-step times and FLOPs:
this is the denoising-loop speedup, not a measured 28-step run (one dense step takes minutes on
2 CPU cores). Batch 1, no CFG (CFG doubles both sides alike).

    python -m benchmarks.ras_speed --ratio 0.25 --out benchmarks/results/ras_speed
    python -m benchmarks.ras_speed --family lumina --ratio 0.25 --out benchmarks/results/ras_speed_lumina

Lumina-Next's text only enters through cross-attention (256 prompt tokens here), so RAS's saving
there is linear in the recomputed tokens, like the self-attention's queries and the MLPs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import accel
from accel.metrics.cost import synchronize
from accel.pipelines.testing import tiny_vae

from .common import without_text_encoders, write_results

SD3_MEDIUM = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=192,
)
# Lumina-Next-SFT 2B (Gemma-2B text features, 2048 wide); diffusers' defaults otherwise
LUMINA_NEXT_2B = dict(
    sample_size=128,
    patch_size=2,
    in_channels=4,
    hidden_size=2304,
    num_layers=24,
    num_attention_heads=32,
    num_kv_heads=8,
    multiple_of=256,
    learn_sigma=True,
    qk_norm=True,
    cross_attention_dim=2048,
)
TITLES = {"sd3": "an SD3-medium-architecture", "lumina": "a Lumina-Next-SFT-2B-architecture"}
PAPER = {"sd3": "2.36x end-to-end on SD3", "lumina": "2.51x end-to-end on Lumina-Next-T2I"}


def build(family: str, layers: int):
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        LuminaNextDiT2DModel,
        LuminaPipeline,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )

    torch.manual_seed(0)
    if family == "lumina":
        transformer = LuminaNextDiT2DModel(**{**LUMINA_NEXT_2B, "num_layers": layers}).eval()
        scheduler, cls, channels = FlowMatchEulerDiscreteScheduler(), LuminaPipeline, 4
    else:
        transformer = SD3Transformer2DModel(**{**SD3_MEDIUM, "num_layers": layers}).eval()
        scheduler, cls, channels = FlowMatchEulerDiscreteScheduler(shift=3.0), StableDiffusion3Pipeline, 16
    vae = tiny_vae(channels, levels=4, shift_factor=0.0)  # latents out: only its scale factor is used
    pipe = without_text_encoders(cls, transformer=transformer, scheduler=scheduler, vae=vae)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_kwargs(family: str, resolution: int) -> dict:
    """Stock pipeline arguments: random prompt embeddings, 2 steps, no CFG, latents out."""
    g = torch.Generator().manual_seed(1)
    common = dict(num_inference_steps=2, guidance_scale=1.0, height=resolution, width=resolution, output_type="latent")
    if family == "lumina":
        return dict(
            prompt_embeds=torch.randn(1, 256, 2048, generator=g),
            prompt_attention_mask=torch.ones(1, 256, dtype=torch.long),
            clean_caption=False,
            **common,
        )
    return dict(
        prompt_embeds=torch.randn(1, 333, 4096, generator=g),
        pooled_prompt_embeds=torch.randn(1, 2048, generator=g),
        **common,
    )


def per_call(pipe, kwargs) -> list[tuple[float, int]]:
    """(seconds, FLOPs) of every denoiser call of one generation."""
    from torch.utils.flop_counter import FlopCounterMode

    records, state = [], {}
    model = pipe.transformer

    def pre(module, args):
        synchronize()
        state["mode"] = FlopCounterMode(display=False)
        state["mode"].__enter__()
        state["start"] = time.perf_counter()

    def post(module, args, output):
        synchronize()
        seconds = time.perf_counter() - state["start"]
        state["mode"].__exit__(None, None, None)
        records.append((seconds, int(state["mode"].get_total_flops())))

    handles = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
    try:
        with torch.no_grad():
            pipe(generator=torch.Generator().manual_seed(0), **kwargs)
    finally:
        for h in handles:
            h.remove()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--family",
        choices=("sd3", "lumina"),
        default="sd3",
        help="sd3: SD3-medium architecture; lumina: Lumina-Next-SFT 2B architecture",
    )
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=24, help="24 = SD3-medium and Lumina-Next-SFT 2B")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/ras_speed")
    args = parser.parse_args()

    pipe = build(args.family, args.layers)
    kwargs = call_kwargs(args.family, args.resolution)
    dense_t, dense_f, sparse_t, sparse_f = [], [], [], []
    for _ in range(args.repeats):
        calls = per_call(pipe, kwargs)
        dense_t += [c[0] for c in calls]
        dense_f += [c[1] for c in calls]
        accel.apply(pipe, accel.RASConfig(sample_ratio=args.ratio, warmup_steps=1))
        try:
            calls = per_call(pipe, kwargs)
            stats = next(iter(accel.summary(pipe)["denoisers"].values()))["plugins"]["ras"]
        finally:
            accel.remove(pipe)
        dense_t.append(calls[0][0])
        dense_f.append(calls[0][1])
        sparse_t.append(calls[1][0])
        sparse_f.append(calls[1][1])
    t_dense, t_sparse = statistics.median(dense_t), statistics.median(sparse_t)
    f_dense, f_sparse = statistics.median(dense_f), statistics.median(sparse_f)
    steps, dense_steps = 28, 4 + 2  # paper: 28 steps, start step 4, error-reset steps 12 and 20
    e2e_time = steps * t_dense / (dense_steps * t_dense + (steps - dense_steps) * t_sparse)
    e2e_flops = steps * f_dense / (dense_steps * f_dense + (steps - dense_steps) * f_sparse)
    result = {
        "config": {
            "family": args.family,
            "layers": args.layers,
            "resolution": args.resolution,
            "tokens": stats["tokens"],
            "text_tokens": stats["text_tokens"],
            "ratio": args.ratio,
            "repeats": args.repeats,
        },
        "device": platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dense_step_seconds": t_dense,
        "ras_step_seconds": t_sparse,
        "dense_step_flops": f_dense,
        "ras_step_flops": f_sparse,
        "step_wall_speedup": t_dense / t_sparse,
        "step_flop_speedup": f_dense / f_sparse,
        "loop28_wall_speedup": e2e_time,
        "loop28_flop_speedup": e2e_flops,
        "tokens_recomputed_on_ras_step": stats["tokens_per_step"][-1],
    }
    lines = [
        f"RAS on {TITLES[args.family]} transformer ({args.layers} layers, random weights, fp32, "
        f"{torch.get_num_threads()} CPU threads), {args.resolution}x{args.resolution} "
        f"({stats['tokens']} image + {stats['text_tokens']} text tokens), batch 1, ratio {args.ratio}.",
        "",
        "| | dense step | RAS step | speedup |",
        "|---|---|---|---|",
        f"| seconds (median of {args.repeats * 2} / {args.repeats}) | {t_dense:.1f} | {t_sparse:.1f} | "
        f"{t_dense / t_sparse:.2f}x |",
        f"| denoiser TFLOPs | {f_dense / 1e12:.2f} | {f_sparse / 1e12:.2f} | {f_dense / f_sparse:.2f}x |",
        "",
        "28-step denoising loop at the paper's SD3 settings (6 dense + 22 RAS steps), composed from the measured "
        "steps: "
        f"**{e2e_time:.2f}x wall clock, {e2e_flops:.2f}x FLOPs** (paper: {PAPER[args.family]}).",
    ]
    write_results(args.out, result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
