"""DeepCache quality on the proving-ground U-Net (``sd-digits``): intervals and schedules against simply
taking fewer steps at the same U-Net FLOPs, on the same prompts and seeds (PSNR/SSIM to the uncached
output, domain FID, prompt alignment).

    python benchmarks/deepcache_quality.py --out benchmarks/results/deepcache_quality
"""

from __future__ import annotations

import argparse

from dit_caching import Setup, compare_with_fewer_steps, evaluate, workload, write_report

import accel


def deepcache(name: str, **fields) -> Setup:
    config = accel.DeepCacheConfig(**fields)
    return Setup(name, "DeepCache (accel)", lambda p: accel.apply(p, config), lambda p: accel.remove(p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sd-digits")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/deepcache_quality")
    args = parser.parse_args()

    pipe, call, prompts, seeds, domain, real = workload(args.model, args.steps, args.samples, 70_000, 7)

    setups = [Setup("baseline", "baseline")]
    setups += [Setup(f"{k} steps", "fewer steps", steps=k) for k in (16, 14, 12, 10, 8, 7, 6, 5)]
    for n in (2, 3, 5):
        setups.append(deepcache(f"N={n} uniform", interval=n))
    setups.append(deepcache("N=3 quadratic", interval=3, schedule="quadratic"))
    setups.append(deepcache("N=5 quadratic", interval=5, schedule="quadratic"))
    setups.append(deepcache("N=3 branch 3", interval=3, branch=3))  # accel 0.1 called this branch 2
    notes: dict[str, str] = {}
    rows = evaluate(pipe, setups, prompts, seeds, call, domain, real, notes, batch=50)
    compare_with_fewer_steps(rows)
    write_report(
        rows,
        notes,
        args.out,
        f"DeepCache on `{args.model}` ({args.steps} steps, guidance "
        f"{call['guidance_scale']:g}, {len(prompts)} samples; FLOPs = U-Net FLOPs counted while it runs; "
        "PSNR/SSIM to the uncached output; FID/alignment from the domain classifier).",
        {"model": args.model, "steps": args.steps, "samples": len(prompts)},
    )


if __name__ == "__main__":
    main()
