"""End-to-end denoiser wall-clock with block-sparse attention at default settings, on random-weight
Wan and CogVideoX architectures at a small resolution.

Each family's transformer is built from a config (no download, random weights), then called as a
bare denoiser for ``--steps`` steps of one generation, first stock, then with each ``--rows`` config
in turn (default: ``--config``, whose default is ``accel.SparseAttentionConfig()``: dynamic masks,
first 20% of steps and layer 0 dense). A first untimed generation per row compiles FlexAttention
(CPU) or autotunes Triton (GPU). Each row reports its mean attention density, the denoiser FLOP
ratio (dense FLOPs counted once by torch's FlopCounterMode, less the attention FLOPs the plugin
skipped) and the wall-clock ratio to stock, measured side by side in one run: ``--repeats`` stock
and sparse generations interleaved, the fastest of each.

Row ``gna`` is Generalized Neighborhood Attention (Hassani et al., arXiv 2504.16922) in a perfectly
block-sparse setting: stride = tile = (4, 4, 4), block 64, kernel (4, 12, 12), odd multiples of the
stride, so the block mask is token-exact; it needs token grids divisible by 4 (``--frames 12
--height 32 --width 56``: 12x16x28 tokens).

    python -m benchmarks.sparse_attention_e2e                                  # latent 13x30x52, 4 layers
    python -m benchmarks.sparse_attention_e2e --families wan --layers 30 --heads 12 --head-dim 128
    python -m benchmarks.sparse_attention_e2e --families wan --frames 12 --height 32 --width 56 \
        --rows gna gna-wide --repeats 2 --tag gna                             # the neighbourhood rows
    python -m benchmarks.sparse_attention_e2e --frames 3 --height 8 --width 8 --layers 2 --heads 2 --steps 2  # smoke

Results go to ``benchmarks/results/sparse_attention_e2e_<device>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import accel
from accel.metrics.cost import ModuleFlops

from .common import table, write_results

GNA = dict(pattern="neighborhood", stride=(4, 4, 4), tile=(4, 4, 4), block_size=64)
#: named rows besides ``config`` (the ``--config`` JSON): SparseAttentionConfig fields
ROWS = {
    "gna": dict(GNA, kernel_size=(4, 12, 12)),
    "gna-wide": dict(GNA, kernel_size=(12, 12, 12)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", nargs="+", default=["wan", "cogvideox"], choices=["wan", "cogvideox"])
    p.add_argument("--frames", type=int, default=13, help="latent frames")
    p.add_argument("--height", type=int, default=30, help="latent rows (tokens: height / 2)")
    p.add_argument("--width", type=int, default=52, help="latent columns (tokens: width / 2)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--text-len", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="denoiser calls per generation")
    p.add_argument("--config", default="{}", help="JSON fields for SparseAttentionConfig (default: its defaults)")
    p.add_argument(
        "--rows",
        nargs="+",
        default=["config"],
        choices=["config", *ROWS],
        help="configs measured after one stock run: 'config' (--config) and named rows (default: config)",
    )
    p.add_argument("--repeats", type=int, default=1, help="timed generations per row; the fastest counts")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    return args


def build(family: str, args: argparse.Namespace) -> tuple[torch.nn.Module, dict]:
    """A random-weight transformer of ``family`` and the keyword inputs of one call."""
    import diffusers

    torch.manual_seed(0)
    text_dim = 64
    latent = 16
    g = torch.Generator().manual_seed(1)
    text = torch.randn(1, args.text_len, text_dim, generator=g)
    if family == "wan":
        model = diffusers.WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=args.heads,
            attention_head_dim=args.head_dim,
            in_channels=latent,
            out_channels=latent,
            text_dim=text_dim,
            freq_dim=64,
            ffn_dim=4 * args.heads * args.head_dim,
            num_layers=args.layers,
        )
        x = torch.randn(1, latent, args.frames, args.height, args.width, generator=g)
        return model, {"hidden_states": x, "encoder_hidden_states": text}
    model = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=args.heads,
        attention_head_dim=args.head_dim,
        in_channels=latent,
        out_channels=latent,
        time_embed_dim=64,
        text_embed_dim=text_dim,
        num_layers=args.layers,
        sample_width=args.width,
        sample_height=args.height,
        sample_frames=(args.frames - 1) * 4 + 1,
        patch_size=2,
        max_text_seq_length=args.text_len,
        use_rotary_positional_embeddings=True,
    )
    x = torch.randn(1, args.frames, latent, args.height, args.width, generator=g)
    return model, {"hidden_states": x, "encoder_hidden_states": text}


def generation(model: torch.nn.Module, inputs: dict, steps: int, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(steps):
            model(**inputs, timestep=torch.tensor([999 - i * 999 // max(steps, 1)], device=device), return_dict=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def configs(args: argparse.Namespace) -> dict[str, accel.SparseAttentionConfig]:
    """``{row name: config}`` of ``--rows``."""
    out = {}
    for name in args.rows:
        fields = json.loads(args.config) if name == "config" else ROWS[name]
        out[name] = accel.SparseAttentionConfig.from_dict(fields)
    return out


def dense_flops(model: torch.nn.Module, inputs: dict, steps: int, device: str) -> float:
    """Denoiser FLOPs of one stock generation of ``steps`` calls (FlopCounterMode)."""
    with ModuleFlops(model) as counter:
        generation(model, inputs, steps, device)
    return float(counter.total)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = args.device
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    row_configs = configs(args)
    rows = []
    for family in args.families:
        model, inputs = build(family, args)
        model = (model.to(device) if dtype == torch.float32 else model.to(device, dtype)).eval()
        inputs = {k: v.to(device, dtype) for k, v in inputs.items()}
        generation(model, inputs, 1, device)  # warm-up
        flops = dense_flops(model, inputs, args.steps, device)
        for name, config in row_configs.items():
            accel.apply(model, config, num_inference_steps=args.steps)
            generation(model, inputs, args.steps, device)  # compile / autotune, masks for every shape
            accel.remove(model)
            stock, sparse = float("inf"), float("inf")
            for _ in range(args.repeats):  # interleaved, so that a change of load on the machine hits both
                stock = min(stock, generation(model, inputs, args.steps, device))
                accel.apply(model, config, num_inference_steps=args.steps)
                sparse = min(sparse, generation(model, inputs, args.steps, device))
                stats = next(iter(accel.summary(model)["denoisers"].values()))["plugins"]["sparse_attention"]
                accel.remove(model)
            skipped = stats["attention_flops_dense"] - stats["attention_flops_computed"]
            row = {
                "family": family,
                "row": name,
                "pattern": config.pattern,
                "config": config.to_dict(),
                "tokens": model_tokens(family, args),
                "stock_s": round(stock, 3),
                "sparse_s": round(sparse, 3),
                "speedup": round(stock / sparse, 3),
                "mean_density": stats["mean_density"],
                "attention_flops_saved": stats["attention_flops_saved"],
                "flop_ratio": round((flops - skipped) / flops, 4),
                "backends": stats["backends"],
            }
            rows.append(row)
            print(
                f"{family} {name}: stock {stock:.2f} s, sparse {sparse:.2f} s, speedup {stock / sparse:.2f}x, "
                f"mean density {stats['mean_density']}, FLOP ratio {row['flop_ratio']}, backends {stats['backends']}"
            )
        del model
    device_name = (
        torch.cuda.get_device_name(0)
        if device.startswith("cuda")
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    result = {
        "benchmark": "sparse_attention_e2e",
        "device": device_name,
        "dtype": str(dtype).replace("torch.", ""),
        "steps": args.steps,
        "repeats": args.repeats,
        "layers": args.layers,
        "heads": args.heads,
        "head_dim": args.head_dim,
        "latent": [args.frames, args.height, args.width],
        "rows": rows,
    }
    write(result, Path(args.out), "cuda" if device.startswith("cuda") else "cpu", args.tag)
    return result


def model_tokens(family: str, args: argparse.Namespace) -> int:
    video = args.frames * (args.height // 2) * (args.width // 2)
    return video + (args.text_len if family == "cogvideox" else 0)


def write(result: dict, out: Path, device: str, tag: str) -> None:
    stem = out / f"sparse_attention_e2e_{device}{('_' + tag) if tag else ''}"
    header = ["family", "row", "tokens", "stock (s)", "sparse (s)", "speedup", "mean density"]
    header += ["attention FLOPs saved", "denoiser FLOP ratio"]
    cells = [
        [
            r["family"],
            r["row"],
            r["tokens"],
            r["stock_s"],
            r["sparse_s"],
            f"{r['speedup']}x",
            r["mean_density"],
            f"{r['attention_flops_saved']:.0%}",
            r["flop_ratio"],
            r["backends"],
        ]
        for r in result["rows"]
    ]
    configs = {r["row"]: {k: v for k, v in r["config"].items() if k != "type"} for r in result["rows"]}
    lines = [
        f"# Sparse attention end to end ({result['device']}, {result['dtype']})",
        "",
        f"Random-weight transformers: {result['layers']} layers, {result['heads']} heads x {result['head_dim']}, "
        f"latent {'x'.join(map(str, result['latent']))}, {result['steps']} steps; per row the fastest of "
        f"{result['repeats']} stock and {result['repeats']} sparse generations, interleaved, in one run.",
        "",
        *(f"- `{name}`: `{config}`" for name, config in configs.items()),
        "",
        *table([*header, "backends"], cells),
    ]
    write_results(str(stem), result, lines)
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
