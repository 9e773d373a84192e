"""Block-sparse attention kernels: time vs density against dense SDPA, at video-like shapes.

For each density, a random block mask with that fraction of key blocks per query row (diagonal
always on) runs through each backend; the table reports the median time, the measured speedup
over dense SDPA, the ideal speedup 1/density and the fraction of ideal reached.

    python -m benchmarks.sparse_attention_kernels                         # 13x15x26 tokens, 12 heads, D=64
    python -m benchmarks.sparse_attention_kernels --frames 21 --height 30 --width 52 --dtype bfloat16
    python -m benchmarks.sparse_attention_kernels --frames 2 --height 4 --width 8 --heads 2 --repeats 1  # smoke

Backends: on CUDA ``triton`` and ``flex``; on CPU compiled ``flex`` and the ``torch`` gather path
(the Triton interpreter is far too slow to time). Results go to
``benchmarks/results/sparse_attention_kernels_<device>.{json,md}``.

The GNA rows (strided neighbourhood attention, arXiv 2504.16922, in its perfectly block-sparse
configurations: stride = tile, 64-token blocks) on a 20x40x40 grid (32,000 tokens): each kernel's
block mask, whether it is token-exact, its density and the attention FLOP ratio; on CUDA also the
Triton kernel's time against dense SDPA and against its ideal::

    python -m benchmarks.sparse_attention_kernels --gna-only      # the GNA rows alone (CPU: masks and FLOPs)
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from accel.kernels import block_sparse_attention
from accel.kernels.block_mask import BlockSparseMask
from accel.sparse_attention.builders.combine import diagonal_blocks

from .common import table, write_results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=13, help="video tokens: frames (after patchify)")
    p.add_argument("--height", type=int, default=15, help="video tokens: rows")
    p.add_argument("--width", type=int, default=26, help="video tokens: columns")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--block", type=int, default=64, help="mask block size (tokens)")
    p.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1])
    p.add_argument("--gna-only", action="store_true", help="only the GNA rows (skip the random-mask timings)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="default: bfloat16 on CUDA, float32 on CPU",
    )
    p.add_argument(
        "--backends",
        nargs="+",
        default=None,
        choices=["triton", "flex", "torch"],
        help="default: triton flex on CUDA, flex torch on CPU",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per case (the first flex call compiles)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--tag", default="", help="suffix of the result file names")
    return p.parse_args(argv)


def mask_at_density(b: int, h: int, n: int, block: int, density: float, seed: int = 0) -> BlockSparseMask:
    """Each query-block row keeps round(density * Nb) key blocks: its diagonal block plus random others."""
    nb = math.ceil(n / block)
    keep = max(1, min(nb, round(density * nb)))
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(b, h, nb, nb, generator=g) + diagonal_blocks(nb, nb, block, block).float() * 2.0
    top = scores.topk(keep, dim=-1).indices
    blocks = torch.zeros(b, h, nb, nb, dtype=torch.bool).scatter_(-1, top, True)
    return BlockSparseMask.from_block_bool(blocks, block, block, n, n)


def timed(fn, repeats: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


#: GNA rows: (grid, tile = stride, kernels), every kernel an odd multiple of the stride per axis
GNA_GRID, GNA_TILE = (20, 40, 40), (4, 4, 4)
GNA_KERNELS = ((4, 12, 12), (12, 12, 12), (4, 20, 20), (12, 28, 28), (20, 40, 40))


def gna_rows(args: argparse.Namespace, dtype: torch.dtype) -> list[dict]:
    """Per GNA kernel: block mask, exactness, density and FLOP ratio; on CUDA, Triton's time too."""
    from accel.sparse_attention.builders.neighborhood import neighborhood_blocks
    from accel.sparse_attention.reorder import SequenceLayout

    layout, block = SequenceLayout(*GNA_GRID, tile=GNA_TILE), math.prod(GNA_TILE)
    n = layout.video_len
    cuda = args.device.startswith("cuda")
    if cuda:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, args.heads, n, args.head_dim, generator=g).to(args.device, dtype) for _ in range(3))
        dense_s = timed(lambda: F.scaled_dot_product_attention(q, k, v), args.repeats, args.warmup, args.device)
    rows = []
    for kernel in GNA_KERNELS:
        start = time.perf_counter()
        blocks, exact = neighborhood_blocks(layout, block, kernel, stride=GNA_TILE)
        row = {
            "grid": list(GNA_GRID),
            "kernel": list(kernel),
            "stride": list(GNA_TILE),
            "exact": exact,
            "density": round(float(blocks.float().mean()), 5),
            "ideal_density": round(math.prod(kernel) / n, 5),
            "flop_ratio": round(1 / float(blocks.float().mean()), 3),
            "mask_ms": round((time.perf_counter() - start) * 1e3, 2),
        }
        if cuda:
            mask = BlockSparseMask.from_block_bool(blocks[None, None].to(args.device), block, block, n, n)
            with torch.no_grad():
                seconds = timed(
                    lambda mask=mask: block_sparse_attention(q, k, v, mask, backend="triton"),
                    args.repeats,
                    args.warmup,
                    args.device,
                )
            row["triton_speedup"] = round(dense_s / seconds, 3)
            row["fraction_of_ideal"] = round(dense_s / seconds / row["flop_ratio"], 3)
        rows.append(row)
        print(f"GNA kernel {kernel}: density {row['density']} (exact {exact}), {row['flop_ratio']}x fewer FLOPs")
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.gna_only:
        return _gna_only(args)
    device = args.device
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    backends = args.backends or (["triton", "flex"] if device.startswith("cuda") else ["flex", "torch"])
    n = args.frames * args.height * args.width
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(args.batch, args.heads, n, args.head_dim, generator=g).to(device, dtype) for _ in range(3))
    with torch.no_grad():
        dense_s = timed(lambda: F.scaled_dot_product_attention(q, k, v), args.repeats, args.warmup, device)
        rows = []
        for density in args.densities:
            mask = mask_at_density(args.batch, args.heads, n, args.block, density).to(device)
            actual = mask.density()
            for backend in backends:
                try:
                    seconds = timed(
                        lambda mask=mask, backend=backend: block_sparse_attention(q, k, v, mask, backend=backend),
                        args.repeats,
                        args.warmup,
                        device,
                    )
                except Exception as exc:  # a backend unavailable here: say so in the table
                    rows.append(
                        {
                            "backend": backend,
                            "target_density": density,
                            "density": actual,
                            "error": f"{type(exc).__name__}: {str(exc)[:160]}",
                        }
                    )
                    print(f"{backend:>6} density {actual:.3f}: {rows[-1]['error']}")
                    continue
                speedup = dense_s / seconds
                ideal = 1.0 / actual
                rows.append(
                    {
                        "backend": backend,
                        "target_density": density,
                        "density": round(actual, 4),
                        "ms": round(seconds * 1e3, 3),
                        "speedup": round(speedup, 3),
                        "ideal": round(ideal, 3),
                        "fraction_of_ideal": round(speedup / ideal, 3),
                    }
                )
                print(
                    f"{backend:>6} density {actual:.3f}: {seconds * 1e3:9.2f} ms  speedup {speedup:6.2f}x  "
                    f"ideal {ideal:6.2f}x  ({speedup / ideal:.0%} of ideal)"
                )
    device_name = (
        torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    result = {
        "benchmark": "sparse_attention_kernels",
        "device": device_name,
        "dtype": str(dtype).replace("torch.", ""),
        "shape": {
            "batch": args.batch,
            "heads": args.heads,
            "tokens": n,
            "grid": [args.frames, args.height, args.width],
            "head_dim": args.head_dim,
            "block": args.block,
        },
        "dense_sdpa_ms": round(dense_s * 1e3, 3),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "rows": rows,
    }
    write(result, Path(args.out), "cuda" if device.startswith("cuda") else "cpu", args.tag)
    return result


def _gna_only(args: argparse.Namespace) -> dict:
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    rows = gna_rows(args, dtype)
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    stem = Path(args.out) / f"sparse_attention_gna_{device}{('_' + args.tag) if args.tag else ''}"
    header = ["kernel (t, h, w)", "token-exact", "density", "prod(kernel)/N", "FLOP ratio", "mask build (ms)"]
    cells = [
        [tuple(r["kernel"]), r["exact"], r["density"], r["ideal_density"], f"{r['flop_ratio']}x", r["mask_ms"]]
        for r in rows
    ]
    if device == "cuda":
        header += ["Triton speedup vs SDPA", "fraction of ideal"]
        for cell, r in zip(cells, rows):
            cell += [f"{r['triton_speedup']}x", f"{r['fraction_of_ideal']:.0%}"]
    lines = [
        f"# Strided neighbourhood attention (GNA) block masks ({device})",
        "",
        f"Grid {'x'.join(map(str, GNA_GRID))} ({math.prod(GNA_GRID):,} tokens), tiles and stride {GNA_TILE}, "
        f"blocks of {math.prod(GNA_TILE)} tokens. "
        "Command: `python -m benchmarks.sparse_attention_kernels --gna-only`.",
        "",
        *table(header, cells),
    ]
    result = {"benchmark": "sparse_attention_gna", "device": device, "rows": rows}
    write_results(str(stem), result, lines)
    return result


def write(result: dict, out: Path, device: str, tag: str) -> None:
    stem = out / f"sparse_attention_kernels_{device}{('_' + tag) if tag else ''}"
    s = result["shape"]
    cells = [
        [r["backend"], f"{r['density']:.3f}", f"n/a: {r['error']}", "", "", ""]
        if "error" in r
        else [
            r["backend"],
            f"{r['density']:.3f}",
            r["ms"],
            f"{r['speedup']}x",
            f"{r['ideal']}x",
            f"{r['fraction_of_ideal']:.0%}",
        ]
        for r in result["rows"]
    ]
    header = ["backend", "density", "time (ms)", "speedup vs SDPA", "ideal (1/density)", "fraction of ideal"]
    lines = [
        f"# Block-sparse attention kernels ({result['device']}, {result['dtype']})",
        "",
        f"B={s['batch']}, H={s['heads']}, N={s['tokens']} ({'x'.join(map(str, s['grid']))} tokens), "
        f"D={s['head_dim']}, block {s['block']}. Dense SDPA: {result['dense_sdpa_ms']} ms "
        f"(median of {result['repeats']}).",
        "",
        *table(header, cells),
    ]
    write_results(str(stem), result, lines)
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
