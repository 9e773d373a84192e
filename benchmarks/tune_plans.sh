#!/bin/bash
# The shipped plans: accel tune on every built-in diffusion model, then Plan.export into
# accel/pipelines/builtin/plans/<model>, then accel eval of each plan's eval.yaml (held-out prompts and
# seeds; domain FID and alignment with fold spreads, verdicts against fewer steps).
# On 2 CPU cores: about 15-25 min per tune and 5-30 min per eval. Every step resumes when rerun.
set -e
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY -m accel.cli tune sd-digits --out runs/tune-sd-digits --num-prompts 5 --seeds 3 --validation-prompts 5 \
    --validation-seeds 4 --population 20 --generations 15 --minutes 30
$PY -m accel.cli tune pixart-shapes --out runs/tune-pixart-shapes --num-prompts 8 --seeds 1 \
    --validation-prompts 12 --validation-seeds 2 --population 16 --generations 12 --minutes 14
$PY -m accel.cli tune sd3-shapes --out runs/tune-sd3-shapes --num-prompts 8 --seeds 1 \
    --validation-prompts 12 --validation-seeds 2 --population 16 --generations 12 --minutes 14
# 10 calibration prompts: with 6, calibration promised 3 dB more than held-out videos gave (1.4 with 10)
$PY -m accel.cli tune wan-moving-shapes --out runs/tune-wan-moving-shapes --num-prompts 10 --seeds 1 \
    --validation-prompts 8 --validation-seeds 2 --population 12 --generations 8 --minutes 30
for model in sd-digits pixart-shapes sd3-shapes wan-moving-shapes; do
    $PY -c "import accel, sys; accel.load_plan(sys.argv[1]).export(sys.argv[2])" \
        "runs/tune-$model" "accel/pipelines/builtin/plans/$model"
    cp "runs/tune-$model/front.png" "accel/pipelines/builtin/plans/$model/front.png"
    $PY -m accel.cli eval "runs/tune-$model/eval.yaml" --out runs/eval-plans --speed flops
done
