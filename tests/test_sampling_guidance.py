"""Adaptive guidance, LinearAG and the guider."""

from __future__ import annotations

import json

import pytest
import torch

import accel
from accel.pipelines.testing import tiny_pipeline
from accel.sampling import AdaptiveClassifierFreeGuidance

from .plugin_mixin import PluginTesterMixin, Target, at_apply

CFG_FAMILIES = [
    "unet",
    "sdxl",
    "pixart",
    "dit",
    "sd3",
    "lumina",
    "cogvideox",
    "ltx_video",
    "wan",
    "flux",
    "hunyuan_video",
]


def _run(tiny, **kw):
    with torch.no_grad():
        return tiny(**tiny.inputs(**kw))


def _stats(pipe, plugin="adaptive_guidance"):
    return next(iter(accel.summary(pipe)["denoisers"].values()))["plugins"][plugin]


@pytest.mark.parametrize("family", CFG_FAMILIES)
def test_threshold_above_one_is_plain_cfg_and_minus_one_drops_after_first_step(family):
    tiny = tiny_pipeline(family)
    baseline = _run(tiny, steps=4)
    accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(threshold=1.5))
    assert torch.equal(_run(tiny, steps=4), baseline)
    assert accel.summary(tiny.pipe)["last_call"]["nfe"] == 8
    assert _stats(tiny.pipe)["cfg_dropped_at_step"] is None
    accel.remove(tiny.pipe)

    accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(threshold=-1))
    dropped = _run(tiny, steps=4)
    summary = accel.summary(tiny.pipe)
    assert summary["last_call"]["nfe"] == 5  # both branches at step 0, then the conditional branch only
    assert _stats(tiny.pipe)["cfg_dropped_at_step"] == 1 and len(_stats(tiny.pipe)["similarities"]) == 1
    accel.remove(tiny.pipe)
    assert not torch.equal(dropped, baseline)
    assert torch.equal(_run(tiny, steps=4), baseline)


def test_dropping_cfg_equals_running_without_guidance_from_that_step():
    """After the latch the pipeline's guidance arithmetic gives exactly the conditional prediction."""
    tiny = tiny_pipeline("unet")
    accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(threshold=-1, min_steps=0, max_step=0))
    latched = _run(tiny, steps=4)
    assert accel.summary(tiny.pipe)["last_call"]["nfe"] == 4
    accel.remove(tiny.pipe)
    no_cfg = _run(tiny, steps=4, guidance=1.0)
    assert torch.allclose(latched, no_cfg, atol=1e-5)


def test_negative_prompt_changes_output_while_cfg_is_on():
    tiny = tiny_pipeline("unet")
    accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(threshold=1.5))
    a = _run(tiny, steps=4)
    kwargs = tiny.inputs(steps=4)
    kwargs["negative_prompt_embeds"] = kwargs["negative_prompt_embeds"] * -2.0
    with torch.no_grad():
        b = tiny(**kwargs)
    accel.remove(tiny.pipe)
    assert not torch.allclose(a, b)


def test_per_sample_reduction_drops_rows_individually():
    tiny = tiny_pipeline("pixart")
    accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(threshold=-1, reduction="sample", min_steps=1))
    _run(tiny, steps=4, batch=2)
    stats = _stats(tiny.pipe)
    assert stats["cfg_dropped_at_step"] == {0: 2, 1: 2}
    assert accel.summary(tiny.pipe)["last_call"]["nfe"] == pytest.approx(2 + 2 + 1 + 1)
    accel.remove(tiny.pipe)


def test_min_and_max_step_and_validation():
    tiny = tiny_pipeline("sd3")
    accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(threshold=1.5, max_step=3))
    _run(tiny, steps=5)
    assert accel.summary(tiny.pipe)["last_call"]["nfe"] == 2 * 3 + 2
    assert _stats(tiny.pipe)["cfg_dropped_at_step"] == 3
    accel.remove(tiny.pipe)
    with pytest.raises(accel.ConfigError, match=r"threshold must be a number in \[-1.0, 2.0\]"):
        accel.AdaptiveGuidanceConfig(threshold=5)
    with pytest.raises(accel.ConfigError, match="reduction must be one of"):
        accel.AdaptiveGuidanceConfig(reduction="mean")
    with pytest.raises(accel.IncompatiblePluginsError, match="classifier-free-guidance branches"):
        accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(), accel.LinearAGConfig.__new__(accel.LinearAGConfig))


def test_guidance_composes_with_caching():
    tiny = tiny_pipeline("unet")
    accel.apply(tiny.pipe, accel.DeepCacheConfig(interval=2), accel.AdaptiveGuidanceConfig(threshold=-1))
    out = _run(tiny, steps=6)
    summary = accel.summary(tiny.pipe)
    assert summary["last_call"]["nfe"] == 2 + 5 and torch.isfinite(out).all()
    assert summary["denoisers"]["unet"]["plugins"]["deep_cache"]["schedule"] == "F.F.F."
    accel.remove(tiny.pipe)

    pixart = tiny_pipeline("pixart")
    accel.apply(pixart.pipe, accel.BlockCacheConfig(interval=2), accel.AdaptiveGuidanceConfig(threshold=-1))
    assert torch.isfinite(_run(pixart, steps=5)).all()
    accel.remove(pixart.pipe)


def test_guider_latches_after_similarity_threshold():
    guider = AdaptiveClassifierFreeGuidance(guidance_scale=3.0, threshold=-1.0)
    cond, uncond = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    guider.set_state(step=0, num_inference_steps=4, timestep=torch.tensor(999))
    assert guider.num_conditions == 2
    out = guider.forward(cond, uncond)
    assert torch.allclose(out.pred, uncond + 3.0 * (cond - uncond))
    guider.set_state(step=1, num_inference_steps=4, timestep=torch.tensor(500))
    assert guider.num_conditions == 1 and torch.equal(guider.forward(cond).pred, cond)
    guider.set_state(step=0, num_inference_steps=4, timestep=torch.tensor(999))  # a new generation
    assert guider.num_conditions == 2
    never = AdaptiveClassifierFreeGuidance(guidance_scale=3.0, threshold=1.5)
    for step in range(3):
        never.set_state(step=step, num_inference_steps=3, timestep=torch.tensor(10))
        assert never.num_conditions == 2
        never.forward(cond, uncond)
    assert AdaptiveClassifierFreeGuidance.from_config(never.config).threshold == 1.5


# ------------------------------------------------------------------------------ plugin contract
class TestAdaptiveGuidancePlugin(PluginTesterMixin):
    """The shared plugin contract (tests/plugin_mixin.py) on the tiny SD3 pipeline (stacked CFG), 4 steps."""

    config_cls = accel.AdaptiveGuidanceConfig
    plugin_name = "adaptive_guidance"
    summary_keys = ("threshold", "cfg_dropped_at_step", "similarities")
    unsupported_family = "timm_vit"
    bad_configs = [
        ({"threshold": 5}, "AdaptiveGuidanceConfig.threshold must be a number in [-1.0, 2.0], got 5"),
        ({"threshold": float("nan")}, "AdaptiveGuidanceConfig.threshold must be a finite number in [-1.0, 2.0]"),
        ({"min_steps": -1}, "AdaptiveGuidanceConfig.min_steps must be an integer in [0, 100000], got -1"),
        ({"max_step": 1.5}, "AdaptiveGuidanceConfig.max_step must be an integer in [0, 100000], got 1.5"),
        ({"reduction": "mean"}, "AdaptiveGuidanceConfig.reduction must be one of ['batch', 'sample'], got 'mean'"),
    ]
    identity_stats = {"cfg_dropped_at_step": None}

    def make_target(self):
        return Target.pipeline("sd3", steps=4)

    def config(self):
        return accel.AdaptiveGuidanceConfig(threshold=-1)  # CFG dropped after the first step

    def identity_config(self):
        return accel.AdaptiveGuidanceConfig(threshold=1.5)  # above 1: never triggers

    def check_active(self, stats, summary):
        assert stats["cfg_dropped_at_step"] == 1 and len(stats["similarities"]) == 1
        assert summary["last_call"]["nfe"] == 2 + 3  # both branches at step 0, then the conditional one only


def _coefficients(test, name="coefficients.json", fmt="accel-linear-ag/3", **fitted_for):
    """A hand-written LinearAG file for the tiny SD pipeline at 4 steps, history 1: u_t = 0.5 c_t + 0.5 u_{t-1}
    at steps 1-3. ``fitted_for`` overrides what it claims to be fitted for (denoiser, scheduler, guidance_scale)."""
    from accel.fingerprint import denoiser_fingerprint
    from accel.pipelines.testing import tiny_denoiser

    path = test.tmp_path / name
    if not path.exists():
        path.write_text(
            json.dumps(
                {
                    "format": fmt,
                    "denoiser": denoiser_fingerprint(tiny_denoiser("unet")),
                    "scheduler": "DDIMScheduler",
                    "guidance_scale": 4.0,
                    **fitted_for,
                    "history": 1,
                    "num_inference_steps": 4,
                    "coefficients": {str(s): [0.5, 0.0, 0.5, 0.0] for s in (1, 2, 3)},
                }
            )
        )
    return str(path)


def _wrong_format(test):
    return _coefficients(test, "wrong_format.json", fmt="something-else/1")


def _not_json(test):
    path = test.tmp_path / "not_json.json"
    path.write_text("this is not JSON")
    return str(path)


def _directory(test):
    return str(test.tmp_path)


class TestLinearAGPlugin(PluginTesterMixin):
    """The shared plugin contract on the tiny SD pipeline, 4 steps, with a hand-written coefficients file."""

    config_cls = accel.LinearAGConfig
    plugin_name = "linear_ag"
    summary_keys = ("threshold", "cfg_dropped_at_step", "similarities", "predicted_steps")
    unsupported_family = "timm_vit"
    bad_configs = [
        ({"predict_every": 0}, "LinearAGConfig.predict_every must be an integer in [1, 1000], got 0"),
        ({"predict_until": 1.5}, "LinearAGConfig.predict_until must be a number in [0.0, 1.0], got 1.5"),
        ({"threshold": 3.0}, "threshold must be a number in [-1.0, 2.0], got 3.0"),
        ({"coefficients": "missing.json"}, "LinearAGConfig.coefficients must be the path of a coefficients JSON file"),
        at_apply({"coefficients": _wrong_format}, "is not a LinearAG coefficients file (format 'something-else/1'"),
        at_apply({"coefficients": _not_json}, "is not valid JSON"),
        ({"coefficients": _directory}, "LinearAGConfig.coefficients must be the path of a coefficients JSON file"),
    ]
    identity_stats = {"predicted_steps": [], "cfg_dropped_at_step": None}

    def make_target(self):
        return Target.pipeline("unet", steps=4)

    def config(self):
        return accel.LinearAGConfig(
            coefficients=_coefficients(self), predict_every=1, predict_until=1.0, threshold=1.5
        )

    def identity_config(self):
        return accel.LinearAGConfig(coefficients=_coefficients(self), predict_until=0.0, threshold=1.5)

    def check_active(self, stats, summary):
        assert stats["predicted_steps"] == [1, 2, 3] and stats["cfg_dropped_at_step"] == 1
        assert summary["last_call"]["nfe"] == 2 + 1 + 1 + 1  # only step 0 evaluates the unconditional branch
