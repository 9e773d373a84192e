"""Region-adaptive sampling."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.pipelines.testing import tiny_denoiser, tiny_pipeline
from accel.sampling.ras.hooks import KVProjectionHook
from accel.sampling.ras.layouts import layout_for
from accel.sampling.ras.lumina_processor import RASLumina2AttnProcessor, RASLuminaNextAttnProcessor
from accel.sampling.ras.selection import from_tokens, importance, select, to_tokens

from .plugin_mixin import PluginTesterMixin, Target

FAMILIES = ["sd3", "pixart", "dit", "flux", "lumina", "lumina2"]
FLOW_FAMILIES = ["sd3", "flux", "lumina", "lumina2"]  # flow-matching pipelines that take ``sigmas``


def _run(tiny, **kw):
    with torch.no_grad():
        return tiny(**tiny.inputs(**kw))


def _stats(pipe):
    return next(iter(accel.summary(pipe)["denoisers"].values()))["plugins"]["ras"]


def _plugin(pipe):
    return accel.get_handle(pipe).sessions[0].plugins[0]


def _image_block(denoiser):
    """The first block whose input is the image tokens alone (Lumina2: the noise refiner)."""
    if hasattr(denoiser, "noise_refiner"):
        return denoiser.noise_refiner[0]
    blocks = getattr(denoiser, "transformer_blocks", None)
    return blocks[0] if blocks is not None else denoiser.layers[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_ratio_one_is_bit_identical_and_remove_restores(family):
    tiny = tiny_pipeline(family)
    baseline = _run(tiny, steps=5)
    accel.apply(tiny.pipe, accel.RASConfig(sample_ratio=1.0))
    assert torch.equal(_run(tiny, steps=5), baseline)
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, accel.RASConfig(sample_ratio=0.25, warmup_steps=2))
    sparse = _run(tiny, steps=5)
    assert torch.equal(_run(tiny, steps=5), sparse)  # state resets between calls
    accel.remove(tiny.pipe)
    assert not torch.equal(sparse, baseline)
    assert torch.equal(_run(tiny, steps=5), baseline)


@pytest.mark.parametrize("family", FAMILIES)
def test_recomputed_tokens_follow_the_schedule(family):
    tiny = tiny_pipeline(family)
    lengths = []
    handle = _image_block(tiny.denoiser).register_forward_pre_hook(
        lambda m, args, kwargs: lengths.append(
            int((kwargs.get("hidden_states") if "hidden_states" in kwargs else args[0]).shape[1])
        ),
        with_kwargs=True,
    )
    config = accel.RASConfig(sample_ratio=0.5, final_sample_ratio=0.25, warmup_steps=2, error_reset_steps=(5,))
    accel.apply(tiny.pipe, config)
    _run(tiny, steps=8)
    handle.remove()
    stats = _stats(tiny.pipe)
    accel.remove(tiny.pipe)
    n = stats["tokens"]
    expected = [config.tokens_kept(s, 8, n) for s in range(8)]
    assert stats["tokens_per_step"] == expected
    assert expected[:2] == [n, n] and expected[5] == n and expected[2] == n // 2 and expected[7] == n // 4
    calls_per_step = len(lengths) // 8
    assert lengths == [k for k in expected for _ in range(calls_per_step)]  # what the blocks really saw
    assert stats["attention_flops_saved"] > 0


def test_kv_cache_refreshes_on_dense_steps_and_updates_active_rows():
    tiny = tiny_pipeline("sd3")
    accel.apply(tiny.pipe, accel.RASConfig(sample_ratio=0.25, warmup_steps=1, error_reset_steps=(3,)))
    plugin = accel.get_handle(tiny.pipe).sessions[0].plugins[0]
    to_k = tiny.denoiser.transformer_blocks[1].attn.to_k
    hook = to_k._diffusers_hook.get_hook(plugin.hook_name("kv"))
    assert isinstance(hook, KVProjectionHook)
    seen = []
    original = hook.post_forward

    def spy(module, output):
        before = hook.state.get_state().full
        before = None if before is None else before.clone()
        result = original(module, output)
        seen.append(
            (
                plugin.session.context.current.step_index,
                plugin.selection.active,
                output,
                before,
                result if plugin.selection.active is None else result.clone(),
            )
        )
        return result

    hook.fn_ref.post_forward = spy
    _run(tiny, steps=5)
    accel.remove(tiny.pipe)
    assert [s for s, *_ in seen] == [0, 1, 2, 3, 4]
    for step, active, fresh, before, result in seen:
        assert result.shape[1] == 16  # the attention always sees every token's keys
        if step in (0, 3):  # dense: the cache is refreshed with all fresh projections
            assert active is None and result is fresh
        else:
            assert fresh.shape[1] == active.numel() == 4
            assert torch.equal(result[:, active], fresh)
            dropped = torch.ones(16, dtype=torch.bool)
            dropped[active] = False
            assert torch.equal(result[:, dropped], before[:, dropped])  # dropped rows: cached values


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_sparse_step_on_unchanged_input_reproduces_the_dense_step(family):
    """sigmas (0.8, 0.8, 0.4): the first update is zero, so step 1 (sparse) sees exactly step 0's
    (dense) latents and timestep; its cached keys/values are then exact, and the recomputed tokens
    must get the dense prediction: this checks the gather, the RoPE rows, the key/value tables, the
    masks and the scatter together. Batch 2 with CFG; for Lumina2 the two prompts have different
    text lengths (padded joint sequence)."""
    tiny = tiny_pipeline(family)
    scheduler = tiny.pipe.scheduler
    inputs, outputs = [], []

    def start_at_first_sigma(module, args, kwargs):  # LuminaPipeline does not call set_begin_index itself
        if scheduler.step_index is None:
            scheduler.set_begin_index(0)
        inputs.append((kwargs["hidden_states"], kwargs["timestep"]))

    hooks = [
        tiny.denoiser.register_forward_pre_hook(start_at_first_sigma, with_kwargs=True),
        tiny.denoiser.register_forward_hook(
            lambda m, a, out: outputs.append(out[0] if isinstance(out, tuple) else out.sample)
        ),
    ]
    kwargs = tiny.inputs(steps=3, batch=2, output_type="latent")
    kwargs["sigmas"] = [0.8, 0.8, 0.4]
    if family == "lumina2":
        mask = torch.ones(2, 8, dtype=torch.long)
        mask[1, 5:] = 0
        kwargs["prompt_attention_mask"] = mask
    accel.apply(tiny.pipe, accel.RASConfig(sample_ratio=0.5, warmup_steps=1))
    plugin = _plugin(tiny.pipe)
    with torch.no_grad():
        tiny.pipe(**kwargs)
    patch = plugin.layout.patch_size(tiny.denoiser)
    active, n = plugin.selection.chosen[1], plugin.selection.num_tokens
    accel.remove(tiny.pipe)
    for h in hooks:
        h.remove()
    assert plugin.selection.chosen[0] is None and active.numel() == n // 2
    dropped = torch.ones(n, dtype=torch.bool)
    dropped[active] = False
    calls = len(outputs) // 3  # denoiser calls per step (2 for separate CFG)
    for (x0, t0), (x1, t1) in zip(inputs[:calls], inputs[calls : 2 * calls]):
        assert torch.equal(x0, x1) and torch.equal(t0, t1)  # the premise: step 1 repeats step 0's input
    for dense, sparse in zip(outputs[:calls], outputs[calls : 2 * calls]):
        dense, sparse = to_tokens(dense, patch), to_tokens(sparse, patch)
        torch.testing.assert_close(sparse[:, active], dense[:, active], rtol=1e-5, atol=1e-5)
        assert not sparse[:, dropped].any()  # dropped tokens: zeros until the step wrapper fills them


@pytest.mark.parametrize("family", ["lumina", "lumina2"])
def test_lumina_kv_tables_refresh_on_dense_steps_and_update_active_rows(family):
    tiny = tiny_pipeline(family)
    accel.apply(tiny.pipe, accel.RASConfig(sample_ratio=0.25, warmup_steps=1, error_reset_steps=(3,)))
    plugin = _plugin(tiny.pipe)
    block = tiny.denoiser.layers[1]
    attn = block.attn1 if family == "lumina" else block.attn
    processor = attn.processor
    assert isinstance(processor, RASLuminaNextAttnProcessor if family == "lumina" else RASLumina2AttnProcessor)
    text = 0 if family == "lumina" else 8  # Lumina2 joint blocks: 8 text rows, then the image rows
    seen = []
    original = processor.full_kv

    def spy(key, value, text_lengths):
        branch = plugin.session.context.current.branch
        before = processor.cache.get(branch)
        before = None if before is None else before[0].clone()
        full_k, full_v = original(key, value, text_lengths)
        seen.append(
            (
                plugin.session.context.current.step_index,
                plugin.selection.active,
                key,
                before,
                full_k.clone(),
                processor.cache[branch][0],
            )
        )
        return full_k, full_v

    processor.full_kv = spy
    _run(tiny, steps=5)
    accel.remove(tiny.pipe)
    assert attn.processor is processor.original  # remove() puts the stock processor back
    assert sorted({s for s, *_ in seen}) == [0, 1, 2, 3, 4]
    for step, active, fresh, before, full, cached in seen:
        assert full.shape[1] == text + 16  # the attention always sees every image token's key
        if step in (0, 3):  # dense: the table is this call's keys
            assert active is None and torch.equal(full, fresh) and torch.equal(cached, fresh[:, text:])
        else:
            assert fresh.shape[1] == text + active.numel() and active.numel() == 4
            assert torch.equal(full[:, :text], fresh[:, :text])  # text keys: always fresh
            image = full[:, text:]
            assert torch.equal(image[:, active], fresh[:, text:])
            dropped = torch.ones(16, dtype=torch.bool)
            dropped[active] = False
            assert torch.equal(image[:, dropped], before[:, dropped])  # dropped rows: cached keys
            assert torch.equal(cached, image)


@pytest.mark.parametrize("family", ["lumina", "lumina2"])
def test_lumina_sparse_output_stays_close_to_dense(family):
    """Random tiny model, 10 steps, 3 dense warm-up steps: RAS moves the final latents by a small
    fraction of the seed-to-seed difference, and less the more tokens it recomputes."""
    tiny = tiny_pipeline(family)
    dense = _run(tiny, steps=10, output_type="latent")
    other_seed = _run(tiny, steps=10, seed=1, output_type="latent")
    errors = []
    for ratio in (0.75, 0.25):
        accel.apply(tiny.pipe, accel.RASConfig(sample_ratio=ratio, warmup_steps=3))
        sparse = _run(tiny, steps=10, output_type="latent")
        accel.remove(tiny.pipe)
        assert torch.isfinite(sparse).all()
        errors.append(((sparse - dense).norm() / dense.norm()).item())
    seed_gap = ((other_seed - dense).norm() / dense.norm()).item()
    assert 0 < errors[0] < errors[1] < 0.25 * seed_gap


def test_batch_two_and_non_square_latents():
    tiny = tiny_pipeline("sd3")
    baseline = _run(tiny, steps=4, batch=2, height=16, width=32)
    accel.apply(tiny.pipe, accel.RASConfig(sample_ratio=1.0))
    assert torch.equal(_run(tiny, steps=4, batch=2, height=16, width=32), baseline)
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, accel.RASConfig(sample_ratio=0.5, warmup_steps=1))
    out = _run(tiny, steps=4, batch=2, height=16, width=32)
    stats = _stats(tiny.pipe)
    accel.remove(tiny.pipe)
    assert out.shape == baseline.shape and torch.isfinite(out).all()
    assert stats["tokens"] == 32 and stats["tokens_per_step"] == [32, 16, 16, 16]


def test_token_layout_roundtrip_and_importance():
    x = torch.randn(2, 4, 6, 8)
    assert torch.equal(from_tokens(to_tokens(x, 2), 2, x.shape), x)
    hot = torch.zeros(1, 4, 4, 4)
    hot[:, :, 2:4, 0:2] = torch.randn(1, 4, 2, 2) * 5  # only token (1, 0) of the 2x2 grid moves
    scores = importance(hot, 2, "std")
    assert scores.argmax().item() == 2 and scores[[0, 1, 3]].abs().max() == 0
    assert importance(hot, 2, "l2").argmax().item() == 2


def test_starvation_brings_long_skipped_tokens_back():
    scores = torch.tensor([4.0, 3.0, 2.0, 1.0])
    # without starvation the same two tokens are always recomputed
    starved = torch.zeros(4)
    picks = []
    for _ in range(4):
        active = select(scores, starved, 2, 0.0, "high")
        starved += 1
        starved[active] = 0
        picks.append(active.tolist())
    assert picks == [[0, 1]] * 4
    # with starvation (s > 0) the low-importance tokens come back within a few steps
    starved = torch.zeros(4)
    seen = set()
    for _ in range(6):
        active = select(scores, starved, 2, 1.0, "high")
        starved += 1
        starved[active] = 0
        seen.update(active.tolist())
    assert seen == {0, 1, 2, 3}
    # keep="low" recomputes the small-update tokens; starvation still pulls the others back
    assert select(scores, torch.zeros(4), 2, 0.0, "low").tolist() == [2, 3]
    assert (
        0 in select(scores, torch.tensor([0.0, 0.0, 0.0, 0.0]) + torch.tensor([5.0, 0, 0, 0]), 2, 1.0, "low").tolist()
    )
    assert select(scores, torch.zeros(4), 2, 0.0, "high", always=torch.tensor([3])).tolist() == [0, 3]


def test_ras_errors():
    with pytest.raises(accel.ConfigError, match=r"sample_ratio must be a number in \(0.0, 1.0\]"):
        accel.RASConfig(sample_ratio=0.0)
    with pytest.raises(accel.ConfigError, match=r"warmup_steps must be an integer in \[1, 100000\]"):
        accel.RASConfig(warmup_steps=0)
    with pytest.raises(accel.UnsupportedModelError, match=r"does not support Wan.*\(wan\); it supports: .*lumina2"):
        accel.apply(tiny_pipeline("wan").pipe, accel.RASConfig())  # a video DiT: not an image_dit
    with pytest.raises(
        accel.UnsupportedModelError,
        match="does not support the 'hunyuan_dit' family yet: it needs the family's token layout.*; "
        "supported: dit, flux, lumina, lumina2, pixart, sd3",
    ):
        layout_for("hunyuan_dit")
    with pytest.raises(accel.UnsupportedModelError, match="apply it to the pipeline"):
        accel.apply(tiny_denoiser("sd3"), accel.RASConfig())
    with pytest.raises(accel.IncompatiblePluginsError, match="BlockCache reuses block outputs"):
        accel.apply(tiny_pipeline("sd3").pipe, accel.RASConfig(), accel.BlockCacheConfig())


# ------------------------------------------------------------------------------ plugin contract
class TestRASPlugin(PluginTesterMixin):
    """The shared plugin contract (tests/plugin_mixin.py) on the tiny SD3 pipeline (16 image tokens), 4 steps."""

    config_cls = accel.RASConfig
    plugin_name = "ras"
    summary_keys = (
        "tokens",
        "text_tokens",
        "tokens_per_step",
        "sparse_steps",
        "token_fraction",
        "attention_flops_fraction",
        "attention_flops_saved",
        "cache_bytes",
    )
    unsupported_family = "wan"
    bad_configs = [
        ({"sample_ratio": 0.0}, "RASConfig.sample_ratio must be a number in (0.0, 1.0], got 0.0"),
        ({"sample_ratio": 1.5}, "RASConfig.sample_ratio must be a number in (0.0, 1.0], got 1.5"),
        ({"final_sample_ratio": 0.0}, "RASConfig.final_sample_ratio must be a number in (0.0, 1.0], got 0.0"),
        ({"warmup_steps": 0}, "RASConfig.warmup_steps must be an integer in [1, 100000], got 0"),
        ({"error_reset_steps": (-1,)}, "RASConfig.error_reset_steps[] must be an integer in [0, 100000], got -1"),
        ({"metric": "l1"}, "RASConfig.metric must be one of ['std', 'l2'], got 'l1'"),
        ({"keep": "mid"}, "RASConfig.keep must be one of ['high', 'low'], got 'mid'"),
        ({"starvation_scale": -1.0}, "RASConfig.starvation_scale must be a number in [0.0, 10.0], got -1.0"),
        ({"keep_tokens": [1]}, "RASConfig.keep_tokens must be a tuple of integers in [0, 1000000000], got [1]"),
    ]
    identity_stats = {"tokens_per_step": [16, 16, 16, 16], "sparse_steps": 0, "token_fraction": 1.0}

    def make_target(self):
        return Target.pipeline("sd3", steps=4)

    def config(self):
        return accel.RASConfig(sample_ratio=0.25, warmup_steps=1)

    def identity_config(self):
        return accel.RASConfig(sample_ratio=1.0)

    def check_active(self, stats, summary):
        assert stats["tokens"] == 16 and stats["tokens_per_step"] == [16, 4, 4, 4] and stats["sparse_steps"] == 3
        assert 0 < stats["attention_flops_saved"] < 1 and stats["cache_bytes"] > 0
