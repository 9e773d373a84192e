"""RAS quality on the proving-ground SD3 (``sd3-shapes``): a quality-speed curve across sample ratios,
against simply taking fewer steps at the same denoiser FLOPs, on the same prompts and seeds.

Each generation runs at batch 1 (RAS picks one token set per step for the whole batch, and the paper
samples one image at a time), with the pipeline's CFG. RAS settings scale the paper's 28-step recipe
(4 dense warm-up steps, dense error-reset steps at 12 and 20) to ``--steps``.

    python -m benchmarks.ras_quality --out benchmarks/results/ras_quality
"""

from __future__ import annotations

import accel

from .common import Setup, accel_setup, evaluate_and_report, reference_setups, workload, workload_parser


def ras_setup(ratio: float, steps: int, final: float | None = None) -> Setup:
    scale = steps / 28
    config = accel.RASConfig(
        sample_ratio=ratio,
        final_sample_ratio=final,
        warmup_steps=max(1, round(4 * scale)),
        error_reset_steps=(round(12 * scale), round(20 * scale)),
    )
    name = f"RAS ratio {ratio:g}" + (f" -> {final:g}" if final is not None else "")
    return accel_setup(name, "RAS (accel)", config)


def main() -> None:
    parser = workload_parser(__doc__.split("\n\n")[0], "sd3-shapes", 60, "benchmarks/results/ras_quality")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.75, 0.5, 0.35, 0.25, 0.15])
    args = parser.parse_args()

    work = workload(args.model, args.steps, args.samples, 60_000, 5)
    setups = reference_setups((19, 18, 17, 16, 14, 12, 10, 8, 6))
    setups += [ras_setup(r, args.steps) for r in args.ratios]
    setups.append(ras_setup(0.5, args.steps, final=0.15))
    caption = (
        f"RAS on `{args.model}` ({args.steps} steps, {args.samples} samples at batch 1, CFG on; FLOPs = denoiser "
        "FLOPs counted while it runs; PSNR/SSIM to the dense output; FID/alignment from the domain classifier)."
    )
    evaluate_and_report(work, setups, args, caption, batch=1)


if __name__ == "__main__":
    main()
