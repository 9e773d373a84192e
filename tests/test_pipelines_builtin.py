"""The shipped proving-ground models load offline by name and produce what their prompts ask for."""

import pytest
import torch

from accel.evaluation.prompts import builtin_prompts
from accel.metrics.domain import DomainMetrics
from accel.pipelines import load
from accel.pipelines.builtin import BUILTIN_MODELS

GENERATORS = [name for name, spec in BUILTIN_MODELS.items() if spec.kind != "classifier"]
# Floors on the domain classifier's prompt alignment at 8 steps: far above chance (digits 0.1, shapes
# and varied shapes about 0.26, moving shapes about 0.28) and under what each model scores at 20 steps
# (docs/proving_ground.md), so an untrained or broken model fails and a working one passes.
MIN_ALIGNMENT = {"digits": 0.6, "shapes": 0.8, "varied_shapes": 0.8, "moving_shapes": 0.8}
SAMPLES = {"image": 10, "video": 6}


@pytest.mark.parametrize("name", GENERATORS)
def test_builtin_pipeline_generates_what_its_prompts_ask_for(name):
    spec = BUILTIN_MODELS[name]
    pipe = load(name)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == spec.pipeline_class
    prompts = builtin_prompts(name)[: SAMPLES[spec.kind]]
    call = dict(spec.call_defaults, num_inference_steps=8, output_type="pt")
    with torch.no_grad():
        out = pipe(prompt=prompts, generator=[torch.Generator().manual_seed(i) for i in range(len(prompts))], **call)
    samples = (out.frames if spec.kind == "video" else out.images).float()
    expected = (len(prompts), call["num_frames"], 3, 32, 32) if spec.kind == "video" else (len(prompts), 3, 32, 32)
    assert samples.shape == expected and torch.isfinite(samples).all()
    alignment = float(DomainMetrics(spec.dataset).alignment(samples.clamp(0, 1), prompts).mean())
    assert alignment > MIN_ALIGNMENT[spec.dataset], f"{name}: alignment {alignment:.3f}"


def test_builtin_vit_classifies_held_out_digits():
    from accel.pipelines.builtin.vit import evaluate

    model = load("vit-digits")
    assert type(model).__name__ == "VisionTransformer"
    assert evaluate(model) > 0.97  # 0.9899 when trained (model card)


def test_unknown_builtin_like_name_names_the_built_in_models():
    with pytest.raises(FileNotFoundError, match="sd-digits"):
        load("./no-such-model")


def test_rerun_check_tells_identical_weights_from_changed_ones(tmp_path):
    from safetensors.torch import save_file

    from accel.pipelines.builtin.reproduce import compare

    weights = {"a": torch.randn(4, 3), "b": torch.randn(5)}
    for folder in ("shipped/unet", "same/unet", "changed/unet"):
        (tmp_path / folder).mkdir(parents=True)
    save_file(weights, tmp_path / "shipped/unet/model.safetensors")
    save_file({k: v.clone() for k, v in weights.items()}, tmp_path / "same/unet/model.safetensors")
    save_file({"a": weights["a"], "b": weights["b"] + 0.5}, tmp_path / "changed/unet/model.safetensors")
    same = compare(str(tmp_path / "shipped"), str(tmp_path / "same"))
    assert same["identical"] and same["tensors"] == 2 and same["max_abs_difference"] == 0
    changed = compare(str(tmp_path / "shipped"), str(tmp_path / "changed"))
    assert not changed["identical"] and changed["differing_tensors"] == 1
    assert abs(changed["max_abs_difference"] - 0.5) < 1e-6
    with pytest.raises(FileNotFoundError, match="the rerun has no"):
        compare(str(tmp_path / "shipped"), str(tmp_path / "missing"))
