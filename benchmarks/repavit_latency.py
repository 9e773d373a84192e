"""RePaViT latency: original timm ViT vs its reparameterized (folded) RePaViT form, side by side.

For each model (random weights, ``pretrained=False``): convert with ``accel.reparam.to_repavit``,
fold with ``reparameterize``, then time both in one process with interleaved repeats (the order
alternates every repeat, warm-up excluded) and report median latency with its spread, throughput,
the throughput speed-up and the FLOP ratio counted by ``torch.utils.flop_counter.FlopCounterMode``.

The paper (arXiv 2505.21847) measures batch 128 fp32 on a GPU; this script defaults to a small CPU
batch so it finishes in a few minutes per model on 2 cores. Example::

    python -m benchmarks.repavit_latency                       # ViT-B/16, ViT-L/16, ViT-H/14, fp32
    python -m benchmarks.repavit_latency --families            # Swin-B, Mixer-B/16, PoolFormer-M48
    python -m benchmarks.repavit_latency --dtype bf16 --batch 8 --repeats 10
    python -m benchmarks.repavit_latency --models vit_tiny_patch16_224 --batch 2 --repeats 2   # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import torch

DEFAULT_MODELS = ("vit_base_patch16_224", "vit_large_patch16_224", "vit_huge_patch14_224")
#: The other families RePaViT converts, at the sizes upstream ships (``--families``).
FAMILY_MODELS = ("swin_base_patch4_window7_224", "mixer_b16_224", "poolformer_m48")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=None, help="timm model names (default: the ViTs)")
    p.add_argument(
        "--families",
        action="store_true",
        help=f"time {', '.join(FAMILY_MODELS)} (written to <out>_families) instead of the ViTs",
    )
    p.add_argument("--batch", type=int, default=4, help="images per forward (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7, help="timed forwards per model and form (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards per form first (default: %(default)s)")
    p.add_argument("--idle-ratio", type=float, default=0.75)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--out",
        default=os.path.join("benchmarks", "results", "repavit_latency"),
        help="output path without extension; writes .json and .md (default: %(default)s)",
    )
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(total FLOPs, FFN FLOPs)`` of one forward (FFN = every block's ``mlp``, or MLP-Mixer's channel MLP
    ``mlp_channels`` before conversion)."""
    from torch.utils.flop_counter import FlopCounterMode

    from accel.reparam.families import family_of
    from accel.reparam.modules import RePaFFNBlock

    family = family_of(model)
    ffn_names = {
        f"{type(model).__name__}.{site.name}.{'mlp' if isinstance(site.block, RePaFFNBlock) else family.ffn_name}"
        for site in family.sites(model)
    }
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    totals = counter.get_flop_counts()
    ffn = sum(sum(counts.values()) for name, counts in totals.items() if name in ffn_names)
    return counter.get_total_flops(), ffn


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _spread(ms: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(ms),
        "p25_ms": _quantile(ms, 0.25),
        "p75_ms": _quantile(ms, 0.75),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "samples_ms": ms,
    }


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import timm

    from accel.reparam import reparameterize, to_repavit

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    original = timm.create_model(name, pretrained=False).eval()
    repa = reparameterize(to_repavit(original, args.idle_ratio), inplace=True)
    original.to(device, dtype)
    repa.to(device, dtype)
    size = original.pretrained_cfg.get("input_size", (3, 224, 224))
    x = torch.randn(args.batch, *size, device=device, dtype=dtype)

    flops_orig, ffn_orig = count_flops(original, x[:1])
    flops_repa, ffn_repa = count_flops(repa, x[:1])

    times: dict[str, list[float]] = {"original": [], "repavit": []}
    models = {"original": original, "repavit": repa}
    with torch.inference_mode():
        for r in range(args.warmup + args.repeats):
            order = ("original", "repavit") if r % 2 == 0 else ("repavit", "original")
            for key in order:
                _sync(device)
                start = time.perf_counter()
                models[key](x)
                _sync(device)
                if r >= args.warmup:
                    times[key].append((time.perf_counter() - start) * 1e3)
    orig, fast = _spread(times["original"]), _spread(times["repavit"])
    paired = [a / b for a, b in zip(times["original"], times["repavit"])]
    result = {
        "model": name,
        "dtype": args.dtype,
        "batch": args.batch,
        "idle_ratio": args.idle_ratio,
        "input_size": list(size),
        "params_original": sum(p.numel() for p in original.parameters()),
        "params_repavit": sum(p.numel() for p in repa.parameters()),
        "original": orig,
        "repavit": fast,
        "throughput_original": args.batch / orig["median_ms"] * 1e3,
        "throughput_repavit": args.batch / fast["median_ms"] * 1e3,
        "speedup": orig["median_ms"] / fast["median_ms"],
        "speedup_paired_median": statistics.median(paired),
        "speedup_paired_range": [min(paired), max(paired)],
        "gflops_original": flops_orig / 1e9,
        "gflops_repavit": flops_repa / 1e9,
        "flop_ratio": flops_repa / flops_orig,
        "ffn_flop_ratio": ffn_repa / ffn_orig if ffn_orig else None,
    }
    del original, repa
    return result


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import timm

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": sys.version.split()[0],
        "device": args.device,
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "command": " ".join(sys.argv),
    }


def markdown(env: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "# RePaViT latency: original vs reparameterized",
        "",
        f"{env['date']} | torch {env['torch']} | timm {env['timm']} | {env['gpu'] or env['cpu']} | "
        f"{env['threads']} threads | random weights | warm-up excluded, repeats interleaved",
        "",
        "| model | dtype | batch | original ms (median [p25-p75]) | RePaViT ms (median [p25-p75]) | "
        "original img/s | RePaViT img/s | speed-up (paired range) | GFLOPs orig -> RePa | FLOP ratio | FFN FLOP ratio "
        "|",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, f = r["original"], r["repavit"]
        lo, hi = r["speedup_paired_range"]
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['batch']} | {o['median_ms']:.1f} "
            f"[{o['p25_ms']:.1f}-{o['p75_ms']:.1f}]"
            f" | {f['median_ms']:.1f} [{f['p25_ms']:.1f}-{f['p75_ms']:.1f}] | {r['throughput_original']:.2f} | "
            f"{r['throughput_repavit']:.2f} | {r['speedup']:.3f}x ({lo:.2f}-{hi:.2f}) | "
            f"{r['gflops_original']:.1f} -> {r['gflops_repavit']:.1f} | {r['flop_ratio']:.3f} | "
            f"{r['ffn_flop_ratio']:.3f} |"
        )
    lines += [
        "",
        f"idle ratio {rows[0]['idle_ratio'] if rows else '-'}; FLOPs from FlopCounterMode "
        "(matmul FLOPs, 2 per MAC, one image).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.models is None:
        args.models = list(FAMILY_MODELS if args.families else DEFAULT_MODELS)
    if args.families:
        args.out += "_families"
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args)
    rows = []
    for name in args.models:
        print(f"[repavit_latency] {name} ({args.dtype}, batch {args.batch}, {args.repeats} repeats) ...", flush=True)
        row = bench_model(name, args)
        rows.append(row)
        print(
            f"  original {row['original']['median_ms']:.1f} ms, RePaViT {row['repavit']['median_ms']:.1f} ms, "
            f"speed-up {row['speedup']:.3f}x, FLOP ratio {row['flop_ratio']:.3f}",
            flush=True,
        )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"environment": env, "settings": vars(args), "results": rows}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(env, rows))
    print(f"wrote {args.out}.json and {args.out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
