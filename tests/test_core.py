"""The foundation: apply/remove exactness, per-generation reset, step counting, summary counts, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import accel
from accel.pipelines import registry
from accel.pipelines.testing import PIPELINE_FAMILIES, tiny_denoiser, tiny_pipeline

from .probe_plugin import CacheProbeAConfig, CacheProbeBConfig, ProbeConfig


def _run(tiny, **kw):
    with torch.no_grad():
        return tiny(**tiny.inputs(**kw))


def _snapshot(tiny):
    """Which modules carry a hook registry / an instance forward, and the hook names on them."""
    marks = []
    for name, module in tiny.pipe.components.items():
        if isinstance(module, nn.Module):
            for sub_name, sub in module.named_modules():
                registry = getattr(sub, "_diffusers_hook", None)
                marks.append(
                    (
                        name,
                        sub_name,
                        registry is not None,
                        tuple(registry.hooks) if registry else (),
                        "forward" in sub.__dict__,
                    )
                )
    return marks


def _assert_pristine(tiny, before=None):
    """No accel hook, override or handle is left; the module tree is marked exactly as ``before``."""
    after = _snapshot(tiny)
    assert not any(any(h.startswith("accel") for h in hooks) for *_, hooks, _ in after)
    if before is not None:
        assert after == before
    sched = tiny.pipe.scheduler
    for name in ("set_timesteps", "set_begin_index", "step"):
        assert name not in sched.__dict__
    assert "prepare_latents" not in tiny.pipe.__dict__
    assert accel.get_handle(tiny.pipe) is None


@pytest.mark.parametrize("family", PIPELINE_FAMILIES)
def test_apply_then_remove_is_bit_identical(family):
    tiny = tiny_pipeline(family)
    baseline = _run(tiny)
    before = _snapshot(tiny)
    accel.apply(tiny.pipe, ProbeConfig(strength=0.05))
    perturbed = _run(tiny)
    assert not torch.equal(perturbed, baseline), "the probe plugin must change the output"
    assert accel.remove(tiny.pipe)
    _assert_pristine(tiny, before)
    assert torch.equal(_run(tiny), baseline)


@pytest.mark.parametrize("family", PIPELINE_FAMILIES)
def test_stateful_plugin_resets_between_generations(family):
    tiny = tiny_pipeline(family)
    accel.apply(tiny.pipe, ProbeConfig(strength=0.05))
    first = _run(tiny, seed=3)
    second = _run(tiny, seed=3)
    assert torch.equal(first, second)
    accel.remove(tiny.pipe)


@pytest.mark.parametrize("family", PIPELINE_FAMILIES)
def test_summary_counts_match_a_counting_wrapper(family):
    tiny = tiny_pipeline(family)
    seen_batches = []
    handle = tiny.denoiser.register_forward_pre_hook(
        lambda module, args, kwargs: seen_batches.append(
            int(
                (
                    kwargs.get("hidden_states")
                    if kwargs.get("hidden_states") is not None
                    else kwargs.get("sample")
                    if kwargs.get("sample") is not None
                    else args[0]
                ).shape[0]
            )
        ),
        with_kwargs=True,
    )
    accel.apply(tiny.pipe, ProbeConfig())
    _run(tiny, steps=3, batch=2)
    handle.remove()
    summary = accel.summary(tiny.pipe)
    last = summary["last_call"]
    assert last["denoiser_calls"] == len(seen_batches)
    assert last["steps"] == 3
    assert last["samples"] == 2
    assert last["nfe"] == pytest.approx(sum(seen_batches) / 2)
    assert summary["denoisers"][next(iter(summary["denoisers"]))]["plugins"]["probe"]["calls_seen"] == len(
        seen_batches
    )
    assert "probe" in str(summary)
    accel.remove(tiny.pipe)


def _probe(handle):
    return handle.sessions[0].plugins[0]


def test_cfg_layout_and_branches():
    stacked = tiny_pipeline("unet")
    handle = accel.apply(stacked.pipe, ProbeConfig())
    _run(stacked, steps=2, batch=2, num_images_per_prompt=2)
    infos = _probe(handle).seen
    assert all(i.cfg_stacked and i.batch_size == 8 and i.samples == 4 and i.branch == "cond_uncond" for i in infos)
    _run(stacked, steps=2, guidance=1.0)
    assert not any(i.cfg_stacked for i in _probe(handle).seen)
    accel.remove(stacked.pipe)

    separate = tiny_pipeline("wan")
    handle = accel.apply(separate.pipe, ProbeConfig())
    _run(separate, steps=2)
    infos = _probe(handle).seen
    assert [(i.step_index, i.call_index, i.branch) for i in infos] == [
        (0, 0, "cond"),
        (0, 1, "uncond"),
        (1, 0, "cond"),
        (1, 1, "uncond"),
    ]
    accel.remove(separate.pipe)

    dit = tiny_pipeline("dit")
    handle = accel.apply(dit.pipe, ProbeConfig())
    _run(dit, steps=2)
    assert all(i.cfg_stacked and i.cfg_order == "cond_first" for i in _probe(handle).seen)
    accel.remove(dit.pipe)


def test_step_counting_with_heun():
    from diffusers import HeunDiscreteScheduler

    tiny = tiny_pipeline("unet", scheduler=HeunDiscreteScheduler())
    handle = accel.apply(tiny.pipe, ProbeConfig())
    _run(tiny, steps=4)
    infos = _probe(handle).seen
    steps = [i.step_index for i in infos]
    assert len(infos) == 7  # Heun: 2 evaluations per step except the last
    assert steps == [0, 0, 1, 1, 2, 2, 3]
    assert {i.num_inference_steps for i in infos} == {4}
    accel.remove(tiny.pipe)


def test_step_counting_with_img2img_strength():
    from diffusers import StableDiffusionImg2ImgPipeline

    tiny = tiny_pipeline("unet")
    pipe = StableDiffusionImg2ImgPipeline(**tiny.pipe.components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    handle = accel.apply(pipe, ProbeConfig())
    kwargs = tiny.inputs(steps=10)
    kwargs.pop("height"), kwargs.pop("width")
    with torch.no_grad():
        pipe(image=torch.rand(1, 3, 16, 16), strength=0.5, **kwargs)
    infos = _probe(handle).seen
    assert [i.step_index for i in infos] == [0, 1, 2, 3, 4]
    assert {i.num_inference_steps for i in infos} == {5}
    accel.remove(pipe)


def test_scheduler_swapped_after_apply_is_followed():
    from diffusers import EulerDiscreteScheduler

    tiny = tiny_pipeline("unet")
    handle = accel.apply(tiny.pipe, ProbeConfig())
    _run(tiny, steps=3)
    tiny.pipe.scheduler = EulerDiscreteScheduler.from_config(tiny.pipe.scheduler.config)
    _run(tiny, steps=5)
    assert [i.step_index for i in _probe(handle).seen] == [0, 1, 2, 3, 4]
    accel.remove(tiny.pipe)
    _assert_pristine(tiny)


def test_bare_denoiser_needs_step_count():
    unet = tiny_denoiser("unet")
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor(10), torch.randn(2, 8, 16)
    with torch.no_grad():
        baseline = unet(x, t, ctx).sample
        handle = accel.apply(unet, ProbeConfig(needs_steps=True))
        with pytest.raises(accel.MissingContextError, match="num_inference_steps"):
            unet(x, t, ctx)
        accel.remove(unet)

        handle = accel.apply(unet, ProbeConfig(needs_steps=True), num_inference_steps=3)
        outs = [unet(x, t, ctx).sample for _ in range(4)]
        assert [(i.step_index, i.generation) for i in _probe(handle).seen] == [(0, 2)]  # 4th call: new generation
        assert torch.equal(outs[0], outs[3])  # state reset after 3 steps
        assert not torch.equal(outs[0], outs[1])
        accel.remove(unet)
        assert torch.equal(unet(x, t, ctx).sample, baseline)


def test_timm_vit_apply_remove():
    vit = tiny_denoiser("timm_vit").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        baseline = vit(x)
        accel.apply(vit, ProbeConfig())
        assert not torch.equal(vit(x), baseline)
        accel.remove(vit)
        assert torch.equal(vit(x), baseline)
    assert not any(hasattr(m, "_diffusers_hook") for m in vit.modules())


def test_unsupported_model_names_supported_families():
    with pytest.raises(accel.UnsupportedModelError) as err:
        accel.apply(nn.Linear(2, 2), ProbeConfig())
    for family in (
        "unet",
        "pixart",
        "sd3",
        "flux",
        "dit",
        "lumina",
        "wan",
        "cogvideox",
        "hunyuan_video",
        "ltx_video",
        "timm_vit",
    ):
        assert family in str(err.value)
    with pytest.raises(accel.UnsupportedModelError):
        accel.apply("not a model", ProbeConfig())


def test_bad_config_and_non_config():
    with pytest.raises(accel.ConfigError, match=r"strength must be a number in \[0.0, 1.0\]"):
        ProbeConfig(strength=3.0)
    with pytest.raises(accel.ConfigError, match="plugin configs"):
        accel.apply(tiny_denoiser("dit"), {"interval": 3})


def test_failed_attach_rolls_back_everything():
    tiny = tiny_pipeline("pixart")
    baseline = _run(tiny)
    before = _snapshot(tiny)
    with pytest.raises(RuntimeError, match="on purpose"):
        accel.apply(tiny.pipe, ProbeConfig(), CacheProbeAConfig(fail_in_attach=True))
    _assert_pristine(tiny, before)
    assert torch.equal(_run(tiny), baseline)

    # a failing second apply keeps the first plugin
    accel.apply(tiny.pipe, ProbeConfig(strength=0.05))
    with_probe = _run(tiny)
    with pytest.raises(RuntimeError, match="on purpose"):
        accel.apply(tiny.pipe, CacheProbeAConfig(fail_in_attach=True))
    assert torch.equal(_run(tiny), with_probe)
    assert accel.summary(tiny.pipe)["plugins"] == ["probe_strength0.05"]
    accel.remove(tiny.pipe)
    _assert_pristine(tiny, before)


def test_incompatible_plugins_say_why():
    with pytest.raises(accel.IncompatiblePluginsError, match="same blocks' outputs"):
        accel.apply(tiny_denoiser("dit"), CacheProbeAConfig(), CacheProbeBConfig())
    with pytest.raises(accel.IncompatiblePluginsError, match="one config per plugin"):
        accel.apply(tiny_denoiser("dit"), ProbeConfig(), ProbeConfig(strength=0.5))
    tiny = tiny_pipeline("dit")
    accel.apply(tiny.pipe, CacheProbeAConfig())
    with pytest.raises(accel.IncompatiblePluginsError):
        accel.apply(tiny.pipe, CacheProbeBConfig())
    accel.remove(tiny.pipe)
    _assert_pristine(tiny)


def test_config_names_and_json_roundtrip():
    config = ProbeConfig(strength=0.25)
    assert str(config) == "probe_strength0.25"
    assert ProbeConfig.from_dict(config.to_dict()) == config
    with pytest.raises(accel.ConfigError, match="unknown field"):
        ProbeConfig.from_dict({"strenght": 1})


def test_every_adapter_finds_blocks_and_components():
    for family in registry.supported_families():
        if family in ("lumina2",):
            continue
        model = tiny_denoiser("unet" if family == "unet" else family)
        adapter = registry.lookup(model)
        assert adapter.family == family
        blocks = adapter.blocks(model)
        assert blocks, family
        if adapter.kind != "unet":
            comps = adapter.components(blocks[0][1])
            assert comps and all(isinstance(m, nn.Module) for m, _ in comps.values()), family


def test_every_plugin_runs_the_shared_contract():
    """Each accel plugin config has a PluginTesterMixin subclass (tests/plugin_mixin.py) in its test file."""
    import importlib

    from accel.plugin import registered_configs

    from .plugin_mixin import PluginTesterMixin

    for name in (
        "test_caching",
        "test_sampling_guidance",
        "test_sampling_guidance_window",
        "test_sampling_ras",
        "test_sampling_timestep_schedule",
        "test_reparam",
        "test_sparse_attention",
        "test_tuning_tune",
    ):
        importlib.import_module(f"{__package__}.{name}")
    pending, covered = [PluginTesterMixin], set()
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            covered.add(sub.config_cls)
    plugins = {c for c in registered_configs() if c.__module__.startswith("accel.")}
    assert len(plugins) >= 7
    assert not plugins - covered, f"plugins without contract tests: {sorted(c.__name__ for c in plugins - covered)}"
