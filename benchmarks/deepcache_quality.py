"""DeepCache quality on the proving-ground U-Net (``sd-digits``): intervals and schedules against simply
taking fewer steps at the same U-Net FLOPs, on the same prompts and seeds (PSNR/SSIM to the uncached
output, domain FID, prompt alignment).

    python -m benchmarks.deepcache_quality --out benchmarks/results/deepcache_quality
"""

from __future__ import annotations

import accel

from .common import Setup, accel_setup, evaluate_and_report, reference_setups, workload, workload_parser


def deepcache(name: str, **fields) -> Setup:
    return accel_setup(name, "DeepCache (accel)", accel.DeepCacheConfig(**fields))


def main() -> None:
    parser = workload_parser(__doc__.split("\n\n")[0], "sd-digits", 200, "benchmarks/results/deepcache_quality")
    args = parser.parse_args()
    work = workload(args.model, args.steps, args.samples, 70_000, 7)
    setups = reference_setups((16, 14, 12, 10, 8, 7, 6, 5))
    setups += [deepcache(f"N={n} uniform", interval=n) for n in (2, 3, 5)]
    setups.append(deepcache("N=3 quadratic", interval=3, schedule="quadratic"))
    setups.append(deepcache("N=5 quadratic", interval=5, schedule="quadratic"))
    setups.append(deepcache("N=3 branch 3", interval=3, branch=3))  # accel 0.1 called this branch 2
    caption = (
        f"DeepCache on `{args.model}` ({args.steps} steps, guidance {work[1]['guidance_scale']:g}, {args.samples} "
        "samples; FLOPs = U-Net FLOPs counted while it runs; PSNR/SSIM to the uncached output; FID/alignment from "
        "the domain classifier)."
    )
    evaluate_and_report(work, setups, args, caption, batch=50)


if __name__ == "__main__":
    main()
