"""DeepCache (U-Nets) and schedule-driven block caching (DiTs)."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from diffusers.hooks.hooks import CacheContext, _set_cache_context

import accel
from accel.caching import BlockCacheConfig, CacheSchedule, DeepCacheConfig, fora_schedule
from accel.context import CallInfo
from accel.pipelines.testing import tiny_pipeline

from .plugin_mixin import PluginTesterMixin, Target, at_apply

DIT_FAMILIES = ["pixart", "dit", "sd3", "flux", "lumina", "wan", "cogvideox", "hunyuan_video", "ltx_video"]


def _run(tiny, **kw):
    with torch.no_grad():
        return tiny(**tiny.inputs(**kw))


def _stats(pipe, plugin):
    return next(iter(accel.summary(pipe)["denoisers"].values()))["plugins"][plugin]


# ------------------------------------------------------------------------------------- DeepCache
@pytest.mark.parametrize("family", ["unet", "sdxl"])
def test_deepcache_interval_one_equals_baseline_and_remove_restores(family):
    tiny = tiny_pipeline(family)
    baseline = _run(tiny, steps=6)
    accel.apply(tiny.pipe, DeepCacheConfig(interval=1))
    assert torch.equal(_run(tiny, steps=6), baseline)
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, DeepCacheConfig(interval=3, branch=0))
    cached = _run(tiny, steps=6)
    stats = _stats(tiny.pipe, "deep_cache")
    assert not torch.equal(cached, baseline)
    assert stats["schedule"] == "F..F.." and stats["skipped_layer_calls"] > 0 and stats["cache_bytes"] > 0
    assert torch.equal(_run(tiny, steps=6), cached)  # state resets between calls
    accel.remove(tiny.pipe)
    assert torch.equal(_run(tiny, steps=6), baseline)


def test_deepcache_deeper_branch_skips_less_and_stays_closer():
    tiny = tiny_pipeline("unet")
    baseline = _run(tiny, steps=6)
    skipped, errors = [], []
    for branch in range(4):
        accel.apply(tiny.pipe, DeepCacheConfig(interval=3, branch=branch))
        errors.append(float((_run(tiny, steps=6) - baseline).abs().mean()))
        skipped.append(_stats(tiny.pipe, "deep_cache")["skipped_layer_calls"])
        accel.remove(tiny.pipe)
    assert skipped == sorted(skipped, reverse=True) and skipped[0] > skipped[-1]
    assert errors[-1] < errors[0]


def _sd15_layout_unet() -> torch.nn.Module:
    """A U-Net with SD 1.5's block layout (4 levels, 2 layers each, 12 skips) at toy width."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()


def _official_deepcache_hooks(unet: torch.nn.Module, interval: int, branch: int, step: list[int]) -> list:
    """DeepCache as the official package defines it (``DeepCacheSDHelper``), written from its rule.

    ``cache_branch_id`` b names down block ``b // 3``, layer ``b % 3`` (a down block's layers are its
    resnet/attention pairs, then its downsampler); up blocks are counted from the output end, their
    layers in reverse. On a step that is not a multiple of the interval a down layer is reused from
    the last full step when its (block, layer) is at or past (b // 3, b % 3), an up layer when it is
    past it, and the mid block always.
    """
    block_id, layer_id = branch // 3, branch % 3
    cache: dict[int, object] = {}

    def skipped(kind: str, block: int, layer: int) -> bool:
        if step[0] % interval == 0:
            return False
        if kind == "mid" or block > block_id:
            return True
        if block < block_id:
            return False
        return layer >= layer_id if kind == "down" else layer > layer_id

    def hook_for(kind: str, block: int, layer: int):
        def hook(module, args, output):
            if skipped(kind, block, layer):
                return cache[id(module)]
            cache[id(module)] = output
            return output

        return hook

    handles = []
    for b, down in enumerate(unet.down_blocks):
        for j, resnet in enumerate(down.resnets):
            modules = [resnet] + ([down.attentions[j]] if getattr(down, "attentions", None) else [])
            handles += [m.register_forward_hook(hook_for("down", b, j)) for m in modules]
        for sampler in down.downsamplers or []:
            handles.append(sampler.register_forward_hook(hook_for("down", b, len(down.resnets))))
    handles.append(unet.mid_block.register_forward_hook(hook_for("mid", 0, 0)))
    levels = len(unet.up_blocks)
    for u, up in enumerate(unet.up_blocks):
        block, count = levels - u - 1, len(up.resnets)
        for j, resnet in enumerate(up.resnets):
            modules = [resnet] + ([up.attentions[j]] if getattr(up, "attentions", None) else [])
            handles += [m.register_forward_hook(hook_for("up", block, count - j - 1)) for m in modules]
        for sampler in up.upsamplers or []:
            handles.append(sampler.register_forward_hook(hook_for("up", block, 0)))
    return handles


def _denoise(unet: torch.nn.Module, steps: int, step: list[int] | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g)
    text = torch.randn(2, 5, 8, generator=g)
    with torch.no_grad():
        for k in range(steps):
            if step is not None:
                step[0] = k
            x = x - 0.1 * unet(x, 1000 - 50 * k, encoder_hidden_states=text).sample
    return x


@pytest.mark.parametrize("interval", [2, 3])
def test_deepcache_branches_match_the_official_package_numbering(interval):
    unet = _sd15_layout_unet()
    assert accel.pipelines.lookup(unet).skip_layout(unet).num_skips == 12  # branches 0..11, as for SD 1.5
    for branch in range(12):
        step = [0]
        handles = _official_deepcache_hooks(unet, interval, branch, step)
        reference = _denoise(unet, 6, step)
        for handle in handles:
            handle.remove()
        accel.apply(unet, DeepCacheConfig(interval=interval, branch=branch), num_inference_steps=6)
        ours = _denoise(unet, 6)
        accel.remove(unet)
        assert torch.equal(ours, reference), f"branch {branch}, interval {interval}"
    with pytest.raises(accel.ConfigError, match=r"branch must be in \[0, 11\]"):
        accel.apply(unet, DeepCacheConfig(branch=12), num_inference_steps=6)


def test_deepcache_schedules_and_validation():
    assert DeepCacheConfig(interval=4).full_steps(10) == [s % 4 == 0 for s in range(10)]
    quad = DeepCacheConfig(interval=4, schedule="quadratic").full_steps(20)
    first_full = [i for i, f in enumerate(quad) if f]
    gaps = np.diff(first_full)
    assert quad[0] and sum(quad) == 5 and gaps[0] <= gaps[-1]  # denser early
    edges = DeepCacheConfig(interval=5, full_steps_start=2, full_steps_end=2).full_steps(10)
    assert edges == [True, True, False, False, False, True, False, False, True, True]
    with pytest.raises(accel.ConfigError, match=r"interval must be an integer in \[1, 1000\]"):
        DeepCacheConfig(interval=0)
    with pytest.raises(accel.ConfigError, match="schedule must be one of"):
        DeepCacheConfig(schedule="cubic")
    with pytest.raises(accel.ConfigError, match="must start with a full step"):
        DeepCacheConfig(full_step_mask=(False, True))
    tiny = tiny_pipeline("unet")
    with pytest.raises(accel.ConfigError, match=r"branch must be in \[0, 5\] for this U-Net"):
        accel.apply(tiny.pipe, DeepCacheConfig(branch=7))
    assert accel.get_handle(tiny.pipe) is None
    with pytest.raises(accel.UnsupportedModelError, match="DeepCacheConfig does not support"):
        accel.apply(tiny_pipeline("pixart").pipe, DeepCacheConfig())


def test_deepcache_counts_sampler_steps_with_heun_and_img2img():
    from diffusers import HeunDiscreteScheduler, StableDiffusionImg2ImgPipeline

    tiny = tiny_pipeline("unet", scheduler=HeunDiscreteScheduler())
    accel.apply(tiny.pipe, DeepCacheConfig(interval=2))
    _run(tiny, steps=6)
    stats = _stats(tiny.pipe, "deep_cache")
    assert stats["schedule"] == "F.F.F."  # 6 sampler steps (11 denoiser evaluations), not 11
    assert accel.summary(tiny.pipe)["last_call"]["denoiser_calls"] == 11
    accel.remove(tiny.pipe)

    tiny = tiny_pipeline("unet")
    pipe = StableDiffusionImg2ImgPipeline(**tiny.pipe.components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    accel.apply(pipe, DeepCacheConfig(interval=2))
    kwargs = tiny.inputs(steps=10)
    kwargs.pop("height"), kwargs.pop("width")
    with torch.no_grad():
        pipe(image=torch.rand(1, 3, 16, 16), strength=0.6, **kwargs)
    assert _stats(pipe, "deep_cache")["schedule"] == "F.F.F."  # strength 0.6 of 10 steps: 6 steps, from 0
    accel.remove(pipe)


def test_deepcache_with_controlnet_residuals():
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    tiny = tiny_pipeline("unet")
    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(tiny.pipe.unet, conditioning_embedding_out_channels=(8, 8)).eval()
    pipe = StableDiffusionControlNetPipeline(
        **tiny.pipe.components, controlnet=controlnet, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    kwargs = tiny.inputs(steps=6)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        baseline = pipe(image=image, **kwargs).images
        accel.apply(pipe, DeepCacheConfig(interval=1))
        assert torch.equal(pipe(image=image, **tiny.inputs(steps=6)).images, baseline)
        accel.remove(pipe)
        accel.apply(pipe, DeepCacheConfig(interval=3))
        cached = pipe(image=image, **tiny.inputs(steps=6)).images
        assert _stats(pipe, "deep_cache")["schedule"] == "F..F.."
        accel.remove(pipe)
    assert not torch.equal(cached, baseline) and torch.isfinite(cached).all()


# ------------------------------------------------------------------------------------ BlockCache
@pytest.mark.parametrize("family", DIT_FAMILIES)
def test_block_cache_full_recompute_is_bit_identical(family):
    tiny = tiny_pipeline(family)
    baseline = _run(tiny, steps=5)
    accel.apply(tiny.pipe, BlockCacheConfig(interval=1))
    assert torch.equal(_run(tiny, steps=5), baseline)
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, BlockCacheConfig(interval=2))
    cached = _run(tiny, steps=5)
    stats = _stats(tiny.pipe, "block_cache")
    assert stats["recompute_fraction_per_step"] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert not torch.equal(cached, baseline)
    accel.remove(tiny.pipe)
    assert torch.equal(_run(tiny, steps=5), baseline)


def test_fora_schedule_shape_warmup_and_live_blocks():
    sched = fora_schedule(
        8,
        6,
        ("attn1", "attn2", "ff"),
        interval=3,
        warmup_steps=2,
        live_first_blocks=1,
        live_last_blocks=2,
        cached_components=("attn1", "ff"),
    )
    mask = sched.recompute
    assert mask.shape == (8, 6, 3)
    assert mask[:2].all() and mask[2].all() and mask[5].all()  # warm-up, then every 3rd step after it
    assert mask[3, 0].all() and mask[3, 4:].all()  # live first / last blocks
    assert not mask[3, 1:4, 0].any() and mask[3, 1:4, 1].all()  # attn2 is never cached here
    assert sched.recompute_fraction() == pytest.approx(mask.mean())


def test_schedule_json_roundtrip_and_loaded_schedule(tmp_path):
    tiny = tiny_pipeline("pixart")
    baseline = _run(tiny, steps=4)
    sched = fora_schedule(4, 3, ("attn1", "attn2", "ff"), interval=2, family="pixart")
    sched.metadata["cost"] = {"flops_ratio": 0.5}
    path = sched.save(str(tmp_path / "s.json"))
    loaded = CacheSchedule.load(path)
    assert np.array_equal(loaded.recompute, sched.recompute) and loaded.metadata["cost"]["flops_ratio"] == 0.5
    assert json.load(open(path))["cache_schedule"]["schedule"][0][0] == [True, True, True]

    accel.apply(tiny.pipe, BlockCacheConfig(schedule=path))
    from_file = _run(tiny, steps=4)
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, BlockCacheConfig(interval=2))
    assert torch.equal(_run(tiny, steps=4), from_file)
    accel.remove(tiny.pipe)
    assert not torch.equal(from_file, baseline)

    accel.apply(tiny.pipe, BlockCacheConfig(schedule=path))
    with pytest.raises(accel.ConfigError, match="does not match the run"):
        _run(tiny, steps=6)
    accel.remove(tiny.pipe)
    with pytest.raises(accel.ConfigError, match="made for the 'pixart' family"):
        accel.apply(tiny_pipeline("dit").pipe, BlockCacheConfig(schedule=path))
    with pytest.raises(accel.ConfigError, match="no such file"):
        BlockCacheConfig(schedule=str(tmp_path / "missing.json"))
    with pytest.raises(accel.ConfigError, match="recompute everything at step 0"):
        CacheSchedule(("a",), np.zeros((2, 1, 1), dtype=bool))


# ------------------------------------------------------------------------------------- forecasting
def _reuse_reference(pipe, interval: int) -> list:
    """FORA reuse written plainly: every component returns its last computed output on cached steps."""
    from accel.pipelines.registry import lookup

    step = {"k": -1}
    adapter = lookup(pipe.transformer)
    cache: dict[int, object] = {}

    def count(module, args):
        step["k"] += 1

    def hook(module, args, output):
        if step["k"] % interval and id(module) in cache:
            return cache[id(module)]
        cache[id(module)] = output
        return output

    handles = [pipe.transformer.register_forward_pre_hook(count)]
    for _, block in adapter.blocks(pipe.transformer):
        for module, _kind in adapter.components(block).values():
            handles.append(module.register_forward_hook(hook))
    return handles


def test_forecast_order_zero_is_todays_reuse():
    tiny = tiny_pipeline("pixart")
    handles = _reuse_reference(tiny.pipe, 3)
    reference = _run(tiny, steps=7)
    for handle in handles:
        handle.remove()
    accel.apply(tiny.pipe, BlockCacheConfig(interval=3, forecast_order=0))
    assert torch.equal(_run(tiny, steps=7), reference)
    stats = _stats(tiny.pipe, "block_cache")
    assert stats["forecast_calls"] == 0 and stats["forecast_bytes"] == 0
    accel.remove(tiny.pipe)


@pytest.mark.parametrize("order", [1, 2])
def test_forecast_of_a_polynomial_feature_is_exact(order):
    from accel.caching.forecast import CachedOutput

    info = CallInfo(0, 0, 10, 0, 0, "cond", 2, 2, False)
    feature = lambda x: (torch.full((2, 3), 1.5) + 0.25 * x + (0.125 * x * x if order == 2 else 0.0),)  # noqa: E731
    state = CachedOutput()
    for x in (0.0, 3.0, 6.0)[: order + 1]:
        state.record(x, feature(x), batch=2, keep=order + 1, info=info)
    for x in (7.0, 8.0, 9.0):  # extrapolated between recomputations, as a cached step does
        torch.testing.assert_close(state.estimate(x, order)[0], feature(x)[0], rtol=0, atol=1e-5)
    assert not torch.allclose(state.estimate(7.0, 0)[0], feature(7.0)[0])  # reuse is not


def test_forecasting_caches_are_exact_on_remove_and_reported(tmp_path):
    tiny = tiny_pipeline("pixart")
    baseline = _run(tiny, steps=6)
    accel.apply(tiny.pipe, BlockCacheConfig(interval=2))
    reused = _run(tiny, steps=6)
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, BlockCacheConfig(interval=2, forecast_order=1))
    forecast = _run(tiny, steps=6)
    assert torch.equal(_run(tiny, steps=6), forecast)  # the history resets between calls
    stats = _stats(tiny.pipe, "block_cache")
    assert stats["forecast_calls"] > 0 and 0 < stats["forecast_bytes"] < stats["cache_bytes"]
    assert not torch.equal(forecast, reused)
    accel.remove(tiny.pipe)
    assert torch.equal(_run(tiny, steps=6), baseline)

    unet = tiny_pipeline("unet")
    base = _run(unet, steps=6)
    accel.apply(unet.pipe, DeepCacheConfig(interval=3, forecast_order=2, forecast_variable="timestep"))
    _run(unet, steps=6)
    deep = _stats(unet.pipe, "deep_cache")
    assert deep["forecast_calls"] > 0 and deep["forecast_bytes"] > 0
    accel.remove(unet.pipe)
    assert torch.equal(_run(unet, steps=6), base)

    # a per-unit operator in the schedule JSON: forecast everywhere equals the config's order 1
    sched = fora_schedule(6, 3, ("attn1", "attn2", "ff"), interval=2, family="pixart")
    sched.forecast = np.ones_like(sched.recompute, dtype=np.int64)
    path = sched.save(str(tmp_path / "f.json"))
    assert json.load(open(path))["cache_schedule"]["forecast_schedule"][1][0] == [1, 1, 1]
    accel.apply(tiny.pipe, BlockCacheConfig(schedule=path))
    assert torch.equal(_run(tiny, steps=6), forecast)
    accel.remove(tiny.pipe)
    with pytest.raises(accel.ConfigError, match=r"forecast_order must be an integer in \[0, 2\]"):
        BlockCacheConfig(forecast_order=3)
    with pytest.raises(accel.ConfigError, match="forecast_variable must be one of"):
        DeepCacheConfig(forecast_variable="sigma")
    with pytest.raises(accel.ConfigError, match="forecast orders must be in"):
        CacheSchedule(("a",), np.ones((2, 1, 1), dtype=bool), forecast=np.full((2, 1, 1), 3))


def test_block_cache_separate_uncond_schedule():
    # two-call CFG (Wan): each branch follows its own mask
    wan = tiny_pipeline("wan")
    accel.apply(wan.pipe, BlockCacheConfig(interval=1, uncond_interval=1000))
    _run(wan, steps=4)
    assert _stats(wan.pipe, "block_cache")["recompute_fraction_per_step"] == [1.0, 0.5, 0.5, 0.5]
    accel.remove(wan.pipe)

    # stacked CFG (PixArt): only the half whose schedule says "run" is computed, the other is the cache
    tiny = tiny_pipeline("pixart")
    accel.apply(tiny.pipe, BlockCacheConfig(interval=1, uncond_interval=1000))
    _run(tiny, steps=4)
    assert _stats(tiny.pipe, "block_cache")["recompute_fraction_per_step"] == [1.0, 0.5, 0.5, 0.5]
    accel.remove(tiny.pipe)

    attn = tiny.pipe.transformer.transformer_blocks[1].attn1
    reference = copy.deepcopy(attn)
    handle = accel.apply(tiny.pipe, BlockCacheConfig(interval=1, uncond_interval=1000))
    _set_cache_context(tiny.pipe.transformer, CacheContext("cond_uncond"))
    info = CallInfo(
        generation=1,
        step_index=0,
        num_inference_steps=4,
        eval_index=0,
        call_index=0,
        branch="cond_uncond",
        batch_size=4,
        samples=2,
        cfg_stacked=True,
    )
    x0, x1 = torch.randn(4, 16, 16), torch.randn(4, 16, 16)
    with torch.no_grad():
        handle.context.current = info
        out0 = attn(x0)
        handle.context.current = dataclasses.replace(info, step_index=1)
        out1 = attn(x1)
        assert torch.equal(out1[:2], out0[:2])  # uncond half: cached from step 0
        assert torch.allclose(out1[2:], reference(x1[2:]), atol=1e-6)  # cond half: computed fresh
    accel.remove(tiny.pipe)


def test_block_cache_rejects_bad_settings():
    with pytest.raises(accel.ConfigError, match="must be 'fora' or the path"):
        BlockCacheConfig(schedule="every-2")
    with pytest.raises(accel.ConfigError, match="are not components of pixart"):
        accel.apply(tiny_pipeline("pixart").pipe, BlockCacheConfig(components=("attn",)))
    with pytest.raises(accel.UnsupportedModelError, match="BlockCacheConfig does not support"):
        accel.apply(tiny_pipeline("unet").pipe, BlockCacheConfig())
    with pytest.raises(accel.IncompatiblePluginsError, match="same blocks' outputs"):
        accel.apply(tiny_pipeline("pixart").pipe, BlockCacheConfig(), DeepCacheConfig())


# ------------------------------------------------------------------------------ plugin contract
class TestDeepCachePlugin(PluginTesterMixin):
    """The shared plugin contract (tests/plugin_mixin.py) on the tiny SD pipeline, 4 steps."""

    config_cls = DeepCacheConfig
    plugin_name = "deep_cache"
    summary_keys = (
        "interval",
        "branch",
        "full_steps",
        "cached_steps",
        "schedule",
        "deep_layers",
        "skipped_layer_calls",
        "cache_bytes",
    )
    unsupported_family = "pixart"
    bad_configs = [
        ({"interval": 0}, "DeepCacheConfig.interval must be an integer in [1, 1000], got 0"),
        ({"interval": 2.0}, "DeepCacheConfig.interval must be an integer in [1, 1000], got 2.0"),
        ({"schedule": "cubic"}, "DeepCacheConfig.schedule must be one of ['uniform', 'quadratic']"),
        ({"full_steps_end": -1}, "full_steps_end must be an integer in [0, 10000]"),
        ({"full_step_mask": (False, True)}, "full_step_mask must start with a full step"),
        at_apply({"branch": 7}, "DeepCacheConfig.branch must be in [0, 5] for this U-Net"),
    ]
    identity_stats = {"schedule": "FFFF", "cached_steps": 0, "skipped_layer_calls": 0}

    def make_target(self):
        return Target.pipeline("unet", steps=4)

    def config(self):
        return DeepCacheConfig(interval=2)

    def identity_config(self):
        return DeepCacheConfig(interval=1)

    def check_active(self, stats, summary):
        assert stats["schedule"] == "F.F." and stats["cached_steps"] == 2
        assert stats["skipped_layer_calls"] > 0 and stats["cache_bytes"] > 0


class TestBlockCachePlugin(PluginTesterMixin):
    """The shared plugin contract on the tiny PixArt pipeline, 4 steps, FORA interval 2."""

    config_cls = BlockCacheConfig
    plugin_name = "block_cache"
    summary_keys = (
        "schedule",
        "blocks",
        "components",
        "component_calls",
        "component_calls_computed",
        "recompute_fraction",
        "recompute_fraction_per_step",
        "cache_bytes",
    )
    unsupported_family = "unet"
    bad_configs = [
        ({"interval": 0}, "BlockCacheConfig.interval must be an integer in [1, 1000], got 0"),
        ({"uncond_interval": 0}, "BlockCacheConfig.uncond_interval must be an integer in [1, 1000], got 0"),
        ({"schedule": "every-2"}, "BlockCacheConfig.schedule must be 'fora' or the path of a .json schedule"),
        ({"schedule": "missing.json"}, "BlockCacheConfig.schedule: no such file 'missing.json'"),
        ({"components": ()}, "BlockCacheConfig.components must be None or a non-empty tuple"),
        at_apply({"components": ("attn",)}, "['attn'] are not components of pixart"),
    ]
    identity_stats = {"recompute_fraction": 1.0, "recompute_fraction_per_step": [1.0, 1.0, 1.0, 1.0]}

    def make_target(self):
        return Target.pipeline("pixart", steps=4)

    def config(self):
        return BlockCacheConfig(interval=2)

    def identity_config(self):
        return BlockCacheConfig(interval=1)

    def check_active(self, stats, summary):
        assert stats["recompute_fraction_per_step"] == [1.0, 0.0, 1.0, 0.0]
        assert stats["recompute_fraction"] == 0.5 and stats["cache_bytes"] > 0
