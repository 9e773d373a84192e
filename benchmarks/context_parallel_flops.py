"""Per-rank denoiser FLOPs with and without each plugin under diffusers' context parallelism (Ulysses)
on a full-size, random-weight Wan 2.1 1.3B at 480p.

Each of the ``--nproc_per_node`` ranks builds the Wan 2.1 T2V 1.3B transformer from its published config
(30 blocks, 12 heads of 128, no download, random weights), shards it with ``enable_parallelism``
(Ulysses over every rank) and calls it as a bare denoiser at 480x832 (a 60x104 latent; 512 text
tokens). Every rank counts the FLOPs its own denoiser calls execute (``torch.utils.flop_counter``;
block-sparse attention counted by the blocks it keeps). One plugin at a time, each for the steps it
needs to act once:

* BlockCache (FORA, interval 2): step 0 computes every block (the plain row), step 1 reuses;
* adaptive guidance (CFG dropped after step 0): step 0 runs the stacked CFG batch (the plain CFG row),
  step 1 the conditional branch alone;
* sparse attention (default dynamic masks, no dense warm-up step): step 0.

On the CPU (gloo) every rank computes for real, so the default runs 3 latent frames (9 video frames,
4,680 tokens, a few minutes on 2 cores); ``--frames 21`` is the full 81-frame video (32,760 tokens),
for a GPU or a long CPU run::

    torchrun --nproc_per_node 2 -m benchmarks.context_parallel_flops                 # CPU, gloo
    torchrun --nproc_per_node 8 -m benchmarks.context_parallel_flops --frames 21 --device cuda

Results (rank 0 writes them) go to ``benchmarks/results/context_parallel_flops_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from typing import Any

import torch

import accel
from accel.metrics.cost import ModuleFlops

from .common import table, write_results

#: Wan-AI/Wan2.1-T2V-1.3B-Diffusers, transformer/config.json
WAN_1_3B = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=3, help="latent frames (21: an 81-frame video)")
    p.add_argument("--height", type=int, default=60, help="latent rows (480 pixels / 8)")
    p.add_argument("--width", type=int, default=104, help="latent columns (832 pixels / 8)")
    p.add_argument("--text-len", type=int, default=512)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="default: bf16 on GPUs")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    return p.parse_args(argv)


#: plugin row -> (configs, CFG batch stacked, steps run); the last step is the one the plugin acts on
PLUGINS: dict[str, tuple[Any, bool, int]] = {
    "block_cache": (lambda: [accel.BlockCacheConfig(interval=2)], False, 2),
    "adaptive_guidance": (lambda: [accel.AdaptiveGuidanceConfig(threshold=-1.0)], True, 2),
    "sparse_attention": (lambda: [accel.SparseAttentionConfig(dense_warmup_fraction=0.0, backend="torch")], False, 1),
}


def start(device: str) -> tuple[int, int]:
    """Join the process group torchrun describes; returns (rank, world size)."""
    import torch.distributed as dist

    if device == "cpu":
        # diffusers 0.42.1 places rank r on device ``r % torch.accelerator.device_count()``, which divides
        # by zero on a machine without accelerators; on the CPU every process is its own device.
        torch.accelerator.device_count = lambda: 1
        dist.init_process_group("gloo")
    else:
        dist.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return dist.get_rank(), dist.get_world_size()


def build(args: argparse.Namespace, world: int, dtype: torch.dtype) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The context-parallel Wan 2.1 1.3B (the same random weights on every rank) and one call's inputs."""
    import diffusers
    from diffusers import ContextParallelConfig

    torch.manual_seed(0)
    model = diffusers.WanTransformer3DModel(**WAN_1_3B).to(args.device, dtype).eval()
    model.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world))
    g = torch.Generator().manual_seed(1)
    latent = torch.randn(1, 16, args.frames, args.height, args.width, generator=g)
    text = torch.randn(1, args.text_len, WAN_1_3B["text_dim"], generator=g)
    return model, {
        "hidden_states": latent.to(args.device, dtype),
        "encoder_hidden_states": text.to(args.device, dtype),
    }


def measure(model: torch.nn.Module, inputs: dict[str, Any], name: str) -> dict[str, Any]:
    """The FLOPs of every step of plugin ``name`` on this rank, and what the plugin reports."""
    make, stacked, steps = PLUGINS[name]
    accel.apply(model, *make(), num_inference_steps=steps, cfg_stacked=stacked)
    batch = {k: torch.cat([v, v]) if stacked else v for k, v in inputs.items()}
    flops = []
    with torch.no_grad():
        for step in range(steps):
            timestep = torch.full((2 if stacked else 1,), 999.0 - 500.0 * step, device=inputs["hidden_states"].device)
            with ModuleFlops(model) as counter:
                model(**batch, timestep=timestep, return_dict=False)
            flops.append(counter.total)
    summary = accel.summary(model)
    stats = next(iter(summary["denoisers"].values()))["plugins"][name]
    accel.remove(model)
    keys = ("recompute_fraction", "cfg_dropped_at_step", "mean_density", "attention_flops_saved")
    return {"flops": flops, "nfe": summary["last_call"]["nfe"], "stats": {k: stats[k] for k in keys if k in stats}}


def rows_of(ranks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per plugin: each rank's FLOPs on the step it acts, against the same rank's plain step."""
    rows = []
    for name, (_, stacked, _) in PLUGINS.items():
        per_rank = [r[name]["flops"] for r in ranks]
        plain = (
            [f[0] for f in per_rank] if name != "sparse_attention" else [r["block_cache"]["flops"][0] for r in ranks]
        )
        acting = [f[-1] for f in per_rank]
        rows.append(
            {
                "plugin": name,
                "cfg_batch": stacked,
                "plain_tflops_per_rank": [round(p / 1e12, 3) for p in plain],
                "plugin_tflops_per_rank": [round(a / 1e12, 3) for a in acting],
                "fraction_per_rank": [round(a / p, 4) for a, p in zip(acting, plain)],
                "stats": ranks[0][name]["stats"],
                "ranks_agree": all(r[name]["stats"] == ranks[0][name]["stats"] for r in ranks),
            }
        )
    return rows


def write(rows: list[dict[str, Any]], meta: dict[str, Any], out: str) -> None:
    header = [
        "plugin",
        "batch",
        "plain TFLOPs / rank",
        "with plugin TFLOPs / rank",
        "fraction / rank",
        "reported",
        "ranks agree",
    ]
    lines = [
        f"# Per-rank denoiser FLOPs under context parallelism ({meta['ranks']} ranks, Ulysses)",
        "",
        f"Wan 2.1 T2V 1.3B (random weights, full size), latent {meta['latent']} ({meta['tokens']:,} video tokens), "
        f"{meta['text_len']} text tokens, {meta['dtype']} on {meta['device']}; one row per plugin, each rank's FLOPs "
        "on the step the plugin acts against the same rank's plain step. Command: `torchrun --nproc_per_node "
        f"{meta['ranks']} -m benchmarks.context_parallel_flops --frames {meta['latent'][0]}`.",
        "",
        *table(
            header,
            (
                [
                    r["plugin"],
                    "2 (CFG)" if r["cfg_batch"] else 1,
                    " / ".join(map(str, r["plain_tflops_per_rank"])),
                    " / ".join(map(str, r["plugin_tflops_per_rank"])),
                    " / ".join(map(str, r["fraction_per_rank"])),
                    ", ".join(f"{k} {v}" for k, v in r["stats"].items()),
                    "yes" if r["ranks_agree"] else "**no**",
                ]
                for r in rows
            ),
        ),
    ]
    write_results(out, {"meta": meta, "rows": rows}, lines)


def main(argv: list[str] | None = None) -> None:
    import torch.distributed as dist

    args = parse_args(argv)
    rank, world = start(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    model, inputs = build(args, world, dtype)
    mine = {name: measure(model, inputs, name) for name in PLUGINS}
    ranks: list[Any] = [None] * world
    dist.all_gather_object(ranks, mine)
    if rank == 0:
        tokens = args.frames * (args.height // 2) * (args.width // 2)
        meta = {
            "ranks": world,
            "latent": [args.frames, args.height, args.width],
            "tokens": tokens,
            "text_len": args.text_len,
            "dtype": str(dtype).removeprefix("torch."),
            "device": args.device if args.device == "cuda" else platform.processor() or "cpu",
        }
        rows = rows_of(ranks)
        write(rows, meta, os.path.join(args.out, f"context_parallel_flops_{args.device}"))
        for row in rows:
            print(row)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
