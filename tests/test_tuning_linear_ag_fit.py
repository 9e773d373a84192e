"""LinearAG's calibration (``accel calibrate-linear-ag``): the least-squares fit and the coefficients it writes."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.tuning.linear_ag_fit import calibrate, fit_coefficients


def _stats(pipe, plugin="adaptive_guidance"):
    return next(iter(accel.summary(pipe)["denoisers"].values()))["plugins"][plugin]


def test_linear_ag_fit_recovers_a_known_affine_relation():
    g = torch.Generator().manual_seed(0)
    trajectories = []
    for _ in range(3):
        cond = {s: torch.randn(2, 4, 8, 8, generator=g) for s in range(6)}
        uncond = {0: torch.randn(2, 4, 8, 8, generator=g), 1: torch.randn(2, 4, 8, 8, generator=g)}
        for s in range(2, 6):
            uncond[s] = 0.7 * cond[s] + 0.2 * cond[s - 1] - 0.1 * uncond[s - 1] + 0.05 * uncond[s - 2] + 0.3
        trajectories.append({"cond": cond, "uncond": uncond})
    coefficients, r2 = fit_coefficients(trajectories, history=2)
    assert sorted(coefficients) == [2, 3, 4, 5]
    assert coefficients[3] == pytest.approx([0.7, 0.2, -0.1, 0.0, 0.05, 0.3], abs=1e-6)
    assert min(r2.values()) > 0.999999


def test_linear_ag_calibrate_and_apply(tmp_path):
    from accel.pipelines.testing import tiny_text_pipeline

    pipe = tiny_text_pipeline("unet")
    call = dict(num_inference_steps=8, guidance_scale=3.0, height=16, width=16)
    path = str(tmp_path / "coef.json")
    data = calibrate(pipe, ["a handwritten 1", "a handwritten 2"], call, seeds=[0, 1], history=2, out=path)
    assert data["num_inference_steps"] == 8 and len(data["coefficients"]) == 6

    def gen() -> torch.Tensor:
        generator = torch.Generator().manual_seed(5)
        return pipe(prompt="a handwritten 3", generator=generator, output_type="pt", **call).images

    with torch.no_grad():
        baseline = gen()
        accel.apply(pipe, accel.LinearAGConfig(coefficients=path, predict_every=2, predict_until=0.75, threshold=1.5))
        predicted = gen()
        stats = _stats(pipe, "linear_ag")
        nfe = accel.summary(pipe)["last_call"]["nfe"]
        accel.remove(pipe)
    assert stats["predicted_steps"] == [2, 4]
    assert nfe == 16 - 2
    assert not torch.equal(predicted, baseline)
    assert (predicted - baseline).abs().mean() < 0.05  # the fitted affine estimate stays close to true CFG
    with pytest.raises(accel.ConfigError, match="coefficients JSON file"):
        accel.LinearAGConfig(coefficients=str(tmp_path / "nope.json"))
    accel.apply(pipe, accel.LinearAGConfig(coefficients=path))
    with pytest.raises(accel.ConfigError, match="fitted for 8 steps"):
        pipe(prompt="a handwritten 3", output_type="pt", **{**call, "num_inference_steps": 6})
    accel.remove(pipe)
