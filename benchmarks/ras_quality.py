"""RAS quality on the proving-ground SD3 (``sd3-shapes``): a quality-speed curve across sample ratios,
against simply taking fewer steps at the same denoiser FLOPs, on the same prompts and seeds.

Each generation runs at batch 1 (RAS picks one token set per step for the whole batch, and the paper
samples one image at a time), with the pipeline's CFG. RAS settings scale the paper's 28-step recipe
(4 dense warm-up steps, dense error-reset steps at 12 and 20) to ``--steps``.

    python benchmarks/ras_quality.py --out benchmarks/results/ras_quality
"""

from __future__ import annotations

import argparse

from dit_caching import Setup, compare_with_fewer_steps, evaluate, workload, write_report

import accel


def ras_setup(ratio: float, steps: int, final: float | None = None) -> Setup:
    scale = steps / 28
    config = accel.RASConfig(
        sample_ratio=ratio,
        final_sample_ratio=final,
        warmup_steps=max(1, round(4 * scale)),
        error_reset_steps=(round(12 * scale), round(20 * scale)),
    )
    name = f"RAS ratio {ratio:g}" + (f" -> {final:g}" if final is not None else "")
    return Setup(name, "RAS (accel)", lambda p: accel.apply(p, config), lambda p: accel.remove(p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sd3-shapes")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.75, 0.5, 0.35, 0.25, 0.15])
    parser.add_argument("--out", default="benchmarks/results/ras_quality")
    args = parser.parse_args()

    pipe, call, prompts, seeds, domain, real = workload(args.model, args.steps, args.samples, 60_000, 5)

    setups = [Setup("baseline", "baseline")]
    setups += [Setup(f"{k} steps", "fewer steps", steps=k) for k in (19, 18, 17, 16, 14, 12, 10, 8, 6)]
    setups += [ras_setup(r, args.steps) for r in args.ratios]
    setups.append(ras_setup(0.5, args.steps, final=0.15))
    notes: dict[str, str] = {}
    rows = evaluate(pipe, setups, prompts, seeds, call, domain, real, notes, batch=1)
    compare_with_fewer_steps(rows)
    write_report(
        rows,
        notes,
        args.out,
        f"RAS on `{args.model}` ({args.steps} steps, {len(prompts)} samples at batch 1, "
        "CFG on; FLOPs = denoiser FLOPs counted while it runs; PSNR/SSIM to the dense output; FID/alignment "
        "from the domain classifier).",
        {"model": args.model, "steps": args.steps, "samples": len(prompts)},
    )


if __name__ == "__main__":
    main()
