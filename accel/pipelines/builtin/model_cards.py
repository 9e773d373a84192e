"""Write a model card (``README.md``) into every built-in weights folder.

The card is generated from what the training run recorded (``training.json``: steps, batch, time,
final loss, held-out metrics) and, for the diffusion models, from the sensitivity report
(``benchmarks/proving_ground_sensitivity.py``: FID with its seed spread, the real-vs-real floor,
prompt alignment), so it never states a figure that was not measured.

    python -m accel.pipelines.builtin.model_cards --sensitivity benchmarks/results/sensitivity
"""

from __future__ import annotations

import argparse
import json
import os

from . import BUILTIN_MODELS, WEIGHTS_DIR

DATA = {
    "digits": "scikit-learn's 8x8 handwritten digits (1797 images, ships with scikit-learn), upscaled to 32x32 RGB; "
    'every 6th image is held out. Captions: "a handwritten 7".',
    "shapes": "procedural 32x32 RGB shapes: 3 shapes x 4 colours x 5 positions with jittered size and place, "
    'generated from seeds (held-out split: a disjoint seed range). Captions: "a red triangle at the top left".',
    "varied_shapes": "procedural 32x32 RGB shapes of the same 60 classes and captions as `shapes`, with much more "
    "variety within a class: size 10-16 px, +-3 px offset, a darker or brighter, slightly "
    "off-hue fill lit from a random side, on a two-tone gradient background (held-out split: a disjoint "
    'seed range). Captions: "a red triangle at the top left".',
    "moving_shapes": "procedural 9-frame 32x32 videos of one shape moving in one of 4 directions "
    '(3 shapes x 4 colours x 4 directions). Captions: "a blue circle moving left".',
}

COMPONENTS = {
    "vae-rgb32": (
        "AutoencoderKL (diffusers)",
        "32x32 RGB -> 16x16x4 latents, shared by sd-digits and sd3-shapes",
        "python -m accel.pipelines.builtin.train_autoencoders image",
        "shapes and digits",
    ),
    "vae-varied-shapes": (
        "AutoencoderKL (diffusers)",
        "32x32 RGB -> 16x16x4 latents, used by pixart-shapes",
        "python -m accel.pipelines.builtin.train_autoencoders varied",
        "varied_shapes",
    ),
    "vae-wan-video": (
        "AutoencoderKLWan (diffusers)",
        "9x32x32 video -> 5x16x16x4 latents, used by wan-moving-shapes",
        "python -m accel.pipelines.builtin.train_autoencoders video",
        "moving_shapes",
    ),
    "classifier-digits": (
        "small CNN (accel.pipelines.builtin.classifier)",
        "domain FID features and prompt alignment for digits",
        "python -m accel.pipelines.builtin.train_classifiers",
        "digits",
    ),
    "classifier-shapes": (
        "small CNN with shape / colour / position heads",
        "domain FID features and prompt alignment for shapes, frame by frame for the moving shapes",
        "python -m accel.pipelines.builtin.train_classifiers",
        "shapes",
    ),
    "classifier-varied-shapes": (
        "small CNN with shape / colour / position heads and binned size / background / shading heads",
        "domain FID features and prompt alignment for the varied shapes",
        "python -m accel.pipelines.builtin.train_classifiers",
        "varied_shapes",
    ),
    "classifier-moving-shapes": (
        "small 3D CNN with shape / colour / direction heads",
        "video FID features (FVD-style: whole clips, so motion counts) for the moving shapes",
        "python -m accel.pipelines.builtin.train_classifiers",
        "moving_shapes",
    ),
}

TRAIN_DIFFUSION = "python -m accel.pipelines.builtin.train_diffusion {name}"
#: The autoencoder behind each diffusion model, as its card names it.
AUTOENCODER = {
    "sd-digits": "the shared `vae-rgb32`",
    "sd3-shapes": "the shared `vae-rgb32`",
    "pixart-shapes": "the `vae-varied-shapes`",
    "wan-moving-shapes": "the `vae-wan-video`",
}


def _metrics_lines(training: dict) -> list[str]:
    lines = []
    for key in ("heldout_accuracy", "heldout_video_frame_accuracy", "reconstruction_psnr_db"):
        value = training.get(key)
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.4f}" for k, v in value.items())
        if isinstance(value, float):
            value = f"{value:.4f}"
        if value is not None:
            lines.append(f"- {key.replace('_', ' ')}: {value}")
    return lines


def _sensitivity_lines(report: dict) -> list[str]:
    def fmt(pair):
        return f"{pair[0]:.3g} ± {pair[1]:.2g}"

    base = report["rows"][0]
    lines = [
        f"Measured by `benchmarks/proving_ground_sensitivity.py` ({report['folds']} seed folds x "
        f"{report['samples_per_fold']} samples, {report['steps']} steps, guidance {report['guidance']:g}):",
        "",
        f"- domain FID: {fmt(base['fid'])} against {report['reference_size']} real samples "
        f"(floor, {report['samples_per_fold']} other real samples: {fmt(report['fid_floor'])})",
        f"- prompt alignment: {fmt(base['alignment'])} (real data: {report['real_alignment']:.3f})",
    ]
    if base.get("video_fid"):
        lines.append(
            f"- video FID (clip classifier): {fmt(base['video_fid'])} (floor: {fmt(report['video_fid_floor'])})"
        )
    if base.get("temporal_consistency"):
        lines.append(f"- temporal consistency: {fmt(base['temporal_consistency'])}")
    return lines


def card(name: str, sensitivity_dir: str | None) -> str:
    folder = os.path.join(WEIGHTS_DIR, name)
    training = json.load(open(os.path.join(folder, "training.json")))
    model = BUILTIN_MODELS.get(name)
    if model is not None:
        title, dataset = model.title, model.dataset
        usage = f'```python\nfrom accel.pipelines import load\nmodel = load("{name}")\n```'
        command = (
            "python -m accel.pipelines.builtin.vit"
            if model.kind == "classifier"
            else TRAIN_DIFFUSION.format(name=name)
        )
        role = f"pipeline: `{model.pipeline_class}`; exercises: {', '.join(model.plugins)}"
    else:
        cls, role, command, dataset = COMPONENTS[name]
        title, usage = cls, ""
    lines = [
        f"# {name}",
        "",
        f"{title}. {role}.",
        "",
        "## Data",
        "",
        DATA[dataset.split(" ")[0]],
        "",
        "## Training",
        "",
        f"- steps: {training['steps']} at batch {training['batch_size']}, seed {training['seed']}",
        f"- time: {training['minutes']} min on {training['threads']} CPU thread(s)",
        f"- parameters: {training['parameters']:,}",
        f"- final loss (smoothed): {training['final_loss']}",
    ]
    if "objective" in training:
        lines.append(
            f"- objective: {training['objective']} prediction"
            if training["objective"] != "flow"
            else "- objective: rectified flow (velocity)"
        )
    if training.get("stopped_by_time_limit"):
        lines.append("- **stopped by the time limit: not reproducible by the command below**")
    precision = "fp32" if name.startswith("classifier-") else "fp16"  # the metric networks stay exact
    lines += ["", f"Reproduce: `{command}` (fixed seeds; weights saved as {precision} safetensors)."]
    check = training.get("rerun_check")
    if check:
        outcome = (
            f"bit-identical weights ({check['tensors']} tensors)"
            if check["identical"]
            else f"{check['differing_tensors']} of {check['tensors']} tensors differ, "
            f"by at most {check['max_abs_difference']:.3g}"
        )
        lines.append(
            f"Rerun by hand on {check['date']} with the same thread count "
            f"(`python -m accel.pipelines.builtin.reproduce {name} <rerun folder>`): {outcome}."
        )
    lines += ["", "## Metrics", ""]
    lines += _metrics_lines(training)
    report_path = os.path.join(sensitivity_dir, f"{name}.json") if sensitivity_dir else None
    if report_path and os.path.exists(report_path):
        lines += _sensitivity_lines(json.load(open(report_path)))
    if name in AUTOENCODER:
        lines += ["", f"Latent diffusion through {AUTOENCODER[name]} autoencoder (not pixel space)."]
    if usage:
        lines += ["", "## Use", "", usage]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensitivity", default=None, help="folder of the sensitivity report's <model>.json files")
    args = parser.parse_args()
    for name in sorted(os.listdir(WEIGHTS_DIR)):
        if os.path.exists(os.path.join(WEIGHTS_DIR, name, "training.json")):
            with open(os.path.join(WEIGHTS_DIR, name, "README.md"), "w") as f:
                f.write(card(name, args.sensitivity))
            print("wrote", os.path.join(WEIGHTS_DIR, name, "README.md"))


if __name__ == "__main__":
    main()
