"""End-to-end denoiser wall-clock with block-sparse attention at default settings, on random-weight
Wan and CogVideoX architectures at a small resolution.

Each family's transformer is built from a config (no download, random weights), then called as a
bare denoiser for ``--steps`` steps of one generation, first stock, then with
``accel.SparseAttentionConfig()`` (defaults: dynamic masks, first 20% of steps and layer 0 dense).
A first untimed generation compiles FlexAttention (CPU) or autotunes Triton (GPU).

    python -m benchmarks.sparse_attention_e2e                                  # latent 13x30x52, 4 layers
    python -m benchmarks.sparse_attention_e2e --families wan --layers 30 --heads 12 --head-dim 128
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

from .common import table, write_results


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
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--tag", default="")
    return p.parse_args(argv)


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


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = args.device
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"))
    config = accel.SparseAttentionConfig.from_dict(json.loads(args.config))
    rows = []
    for family in args.families:
        model, inputs = build(family, args)
        model = (model.to(device) if dtype == torch.float32 else model.to(device, dtype)).eval()
        inputs = {k: v.to(device, dtype) for k, v in inputs.items()}
        generation(model, inputs, 1, device)  # warm-up
        stock = generation(model, inputs, args.steps, device)
        accel.apply(model, config, num_inference_steps=args.steps)
        generation(model, inputs, args.steps, device)  # compile / autotune, masks for every shape
        sparse = generation(model, inputs, args.steps, device)
        stats = accel.summary(model)["denoisers"][next(iter(accel.summary(model)["denoisers"]))]["plugins"][
            "sparse_attention"
        ]
        accel.remove(model)
        grid = model_tokens(family, args)
        row = {
            "family": family,
            "tokens": grid,
            "stock_s": round(stock, 3),
            "sparse_s": round(sparse, 3),
            "speedup": round(stock / sparse, 3),
            "mean_density": stats["mean_density"],
            "attention_flops_saved": stats["attention_flops_saved"],
            "backends": stats["backends"],
        }
        rows.append(row)
        print(
            f"{family}: stock {stock:.2f} s, sparse {sparse:.2f} s, speedup {stock / sparse:.2f}x, "
            f"mean density {stats['mean_density']}, backends {stats['backends']}"
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
        "config": config.to_dict(),
        "steps": args.steps,
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
    header = ["family", "tokens", "stock (s)", "sparse (s)", "speedup", "mean density", "attention FLOPs saved"]
    cells = [
        [
            r["family"],
            r["tokens"],
            r["stock_s"],
            r["sparse_s"],
            f"{r['speedup']}x",
            r["mean_density"],
            f"{r['attention_flops_saved']:.0%}",
            r["backends"],
        ]
        for r in result["rows"]
    ]
    lines = [
        f"# Sparse attention end to end ({result['device']}, {result['dtype']})",
        "",
        f"Random-weight transformers: {result['layers']} layers, {result['heads']} heads x {result['head_dim']}, "
        f"latent {'x'.join(map(str, result['latent']))}, {result['steps']} steps, config `{result['config']}`.",
        "",
        *table([*header, "backends"], cells),
    ]
    write_results(str(stem), result, lines)
    print(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
