"""The guidance window (CFG only on a window of the steps) and CFG-Zero*'s zeroed first steps."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.pipelines.testing import tiny_pipeline

from .plugin_mixin import PluginTesterMixin, Target
from .test_sampling_guidance import CFG_FAMILIES

FLOW_FAMILIES = ("sd3", "flux", "wan")


def _run(tiny, **kw):
    with torch.no_grad():
        return tiny(**tiny.inputs(**kw))


def _stats(pipe):
    return next(iter(accel.summary(pipe)["denoisers"].values()))["plugins"]["guidance_window"]


class TestGuidanceWindowPlugin(PluginTesterMixin):
    """The shared plugin contract on the tiny SD3 pipeline (stacked CFG), 4 steps, CFG on steps 1 and 2."""

    config_cls = accel.GuidanceWindowConfig
    plugin_name = "guidance_window"
    summary_keys = ("start", "stop", "uncond_per_step", "zeroed_steps")
    unsupported_family = "timm_vit"
    bad_configs = [
        ({"start": 0.8, "stop": 0.5}, "GuidanceWindowConfig.start (0.8) must be below stop (0.5)"),
        ({"stop": 1.5}, "GuidanceWindowConfig.stop must be a number in [0.0, 1.0], got 1.5"),
        ({"zero_steps": -1}, "GuidanceWindowConfig.zero_steps must be an integer in [0, 1000], got -1"),
    ]
    identity_stats = {"uncond_per_step": "CCCC", "zeroed_steps": []}

    def make_target(self):
        return Target.pipeline("sd3", steps=4)

    def config(self):
        return accel.GuidanceWindowConfig(start=0.25, stop=0.75)

    def identity_config(self):
        return accel.GuidanceWindowConfig(start=0.0, stop=1.0)

    def check_active(self, stats, summary):
        assert stats["uncond_per_step"] == "-CC-" and summary["last_call"]["nfe"] == 1 + 2 + 2 + 1


@pytest.mark.parametrize("family", CFG_FAMILIES)
def test_the_window_saves_exactly_the_unconditional_calls_outside_it(family):
    """On stacked and two-call CFG pipelines: 8 steps, CFG on steps 2 to 5, so NFE = 8 + 4; outside
    the window the output is what the conditional branch alone gives (guidance 1)."""
    tiny = tiny_pipeline(family)
    accel.apply(tiny.pipe, accel.GuidanceWindowConfig(start=0.25, stop=0.75))
    windowed = _run(tiny, steps=8)
    assert _stats(tiny.pipe)["uncond_per_step"] == "--CCCC--"
    assert accel.summary(tiny.pipe)["last_call"]["nfe"] == 8 + 4
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, accel.GuidanceWindowConfig(start=0.0, stop=0.125))  # CFG at step 0 only
    assert accel.summary(tiny.pipe)["attached"]
    _run(tiny, steps=8)
    assert accel.summary(tiny.pipe)["last_call"]["nfe"] == 8 + 1
    accel.remove(tiny.pipe)
    assert not torch.equal(windowed, _run(tiny, steps=8))


def test_cfg_off_everywhere_but_a_window_equals_guidance_one_there():
    """With CFG only at the last step, every earlier step is the conditional prediction: up to that step
    the trajectory is guidance 1's (checked through a one-step window at the end of 1 step)."""
    tiny = tiny_pipeline("sd3")
    accel.apply(tiny.pipe, accel.GuidanceWindowConfig(start=0.9, stop=1.0))
    windowed = _run(tiny, steps=1)  # step 0 of 1 is outside [0.9, 1): the conditional branch alone
    accel.remove(tiny.pipe)
    assert torch.allclose(windowed, _run(tiny, steps=1, guidance=1.0), atol=1e-5)


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_zeroed_first_steps_skip_the_model_and_keep_the_starting_noise(family):
    """CFG-Zero*'s zero-init: the first 2 of 5 steps run no model (NFE counts the 3 others), and with a
    zero velocity the latent entering step 2 is still the starting noise."""
    tiny = tiny_pipeline(family)
    seen = []  # every call's latent input (a torch pre-hook sees the calls accel answers itself too)
    tiny.denoiser.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw.get("hidden_states", a[0] if a else None).clone()), with_kwargs=True
    )
    accel.apply(tiny.pipe, accel.GuidanceWindowConfig(zero_steps=2))
    out = _run(tiny, steps=5)
    assert _stats(tiny.pipe)["zeroed_steps"] == [0, 1] and out.isfinite().all()
    assert accel.summary(tiny.pipe)["last_call"]["nfe"] == 2 * 3  # two CFG branches, 3 steps
    per_step = len(seen) // 5
    torch.testing.assert_close(seen[2 * per_step], seen[0], rtol=0, atol=1e-6)
    assert not torch.allclose(seen[3 * per_step], seen[0])  # from step 2 on the model moves it


def test_zeroed_steps_are_refused_off_flow_matching_and_the_window_conflicts_with_ag():
    with pytest.raises(accel.UnsupportedModelError, match="zero_steps zeroes a flow-matching velocity"):
        accel.apply(tiny_pipeline("pixart").pipe, accel.GuidanceWindowConfig(zero_steps=1))
    tiny = tiny_pipeline("sd3")
    with pytest.raises(accel.IncompatiblePluginsError, match="classifier-free-guidance branches"):
        accel.apply(tiny.pipe, accel.GuidanceWindowConfig(start=0.5), accel.AdaptiveGuidanceConfig())
    assert accel.get_handle(tiny.pipe) is None


def test_the_window_with_ras_is_refused_with_the_reason():
    tiny = tiny_pipeline("sd3")
    with pytest.raises(accel.IncompatiblePluginsError, match="RAS holds no cached keys"):
        accel.apply(tiny.pipe, accel.GuidanceWindowConfig(start=0.5), accel.RASConfig())
