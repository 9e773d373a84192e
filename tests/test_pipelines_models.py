"""Model coverage: every 2026 family (and two classes accel only discovers) on a tiny random model.

For each family: the adapter is found (or discovered), BlockCache FORA N=2 and adaptive guidance run
on the bare denoiser over 4 steps, are deterministic, report their savings, save the FLOPs the
schedule says (within 5%), add no graph on a second compiled call, and come off exactly. Also:
two-expert pipelines (Wan 2.2's ``transformer_2``), and the support matrix in docs/models.md.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import pytest
import torch

import accel
from accel.metrics.cost import ModuleFlops
from accel.pipelines.registry import lookup, supported_adapters
from accel.pipelines.support import markdown, plugin_status
from accel.pipelines.testing_families import TINY_FAMILIES, prediction, tiny_family_model

STEPS = 4
FAMILIES = sorted(TINY_FAMILIES)
DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "models.md")


def _loop(model: torch.nn.Module, family: str) -> list[torch.Tensor]:
    """One 4-step generation of the bare denoiser on a stacked CFG batch of 2 (uncond, cond)."""
    outputs = []
    with torch.no_grad():
        for step in range(STEPS):
            outputs.append(prediction(model(**TINY_FAMILIES[family].inputs(2, 0, step))).float().clone())
    return outputs


def _flops(model: torch.nn.Module, family: str) -> int:
    with ModuleFlops(model) as counter:
        _loop(model, family)
    return counter.total


def _component_flops(model: torch.nn.Module, family: str, adapter) -> int:
    """FLOPs spent inside the components BlockCache may skip, over one generation."""
    with contextlib.ExitStack() as stack:
        counters = [
            stack.enter_context(ModuleFlops(module))
            for _, block in adapter.blocks(model)
            for module, _ in adapter.components(block).values()
        ]
        _loop(model, family)
    return sum(c.total for c in counters)


def _quiet_apply(target, *configs, **hints):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "discovered automatically" is tested on its own below
        return accel.apply(target, *configs, **hints)


@pytest.mark.parametrize("family", FAMILIES)
def test_block_cache_on_every_family(family):
    model = tiny_family_model(family)
    adapter = lookup(model)
    assert adapter.family == family and adapter.discovered == family.startswith("auto:")
    reference = _loop(model, family)
    total, skippable = _flops(model, family), _component_flops(model, family, adapter)
    assert skippable > 0.3 * total, (skippable, total)  # the components carry the model's work

    config = accel.BlockCacheConfig(interval=2, forecast_order=1)  # FORA N=2 with the order-1 forecast
    _quiet_apply(model, config, num_inference_steps=STEPS, cfg_stacked=True)
    cached_flops = _flops(model, family)
    first, second = _loop(model, family), _loop(model, family)
    stats = accel.summary(model)["denoisers"][type(model).__name__]["plugins"]["block_cache"]
    accel.remove(model)

    assert all(torch.equal(a, b) for a, b in zip(first, second))  # same inputs, same outputs
    assert all(torch.isfinite(a).all() for a in first)
    assert stats["component_calls"] > 0 and stats["recompute_fraction"] == 0.5
    ideal = total - skippable * (1 - stats["recompute_fraction"])
    assert abs(cached_flops / ideal - 1) < 0.05, (cached_flops, ideal)  # the schedule's saving, no hidden cost
    assert total / cached_flops > 1.15
    assert all(torch.equal(a, b) for a, b in zip(reference, _loop(model, family)))  # removed exactly


@pytest.mark.parametrize("family", FAMILIES)
def test_adaptive_guidance_on_every_family_or_a_reason(family):
    model = tiny_family_model(family)
    status = plugin_status(lookup(model), "AdaptiveGuidanceConfig")
    config = accel.AdaptiveGuidanceConfig(threshold=-1.0, min_steps=1)  # CFG dropped after the first test
    if not status.supported:
        with pytest.raises(accel.UnsupportedModelError, match="does not run on"):
            _quiet_apply(model, config, num_inference_steps=STEPS, cfg_stacked=True)
        return
    reference, total = _loop(model, family), _flops(model, family)
    _quiet_apply(model, config, num_inference_steps=STEPS, cfg_stacked=True)
    guided_flops = _flops(model, family)
    first, second = _loop(model, family), _loop(model, family)
    stats = accel.summary(model)["denoisers"][type(model).__name__]["plugins"]["adaptive_guidance"]
    accel.remove(model)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert stats["cfg_dropped_at_step"] is not None and total / guided_flops > 1.2
    # the conditional rows are those of the plain model at the steps before the drop
    assert torch.allclose(first[0], reference[0])
    assert all(torch.equal(a, b) for a, b in zip(reference, _loop(model, family)))


@pytest.mark.parametrize("family", FAMILIES)
def test_no_new_graph_on_a_second_compiled_call(family):
    model = tiny_family_model(family)
    graphs: list = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    _quiet_apply(model, accel.BlockCacheConfig(interval=2), num_inference_steps=STEPS, cfg_stacked=True)
    model.compile(backend=backend)
    with torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=4096):
        _loop(model, family)
        first = len(graphs)
        _loop(model, family)
    torch._dynamo.reset()
    accel.remove(model)
    assert first >= 1 and len(graphs) == first, (first, len(graphs))


@pytest.mark.parametrize("family", ["wan_vace", "skyreels_v2"])
def test_sparse_attention_on_the_wan_derived_families(family, monkeypatch):
    """Wan VACE and SkyReels-V2 compute attention as Wan does: the block-sparse path with every block
    kept equals the stock model, and the default thresholds keep a fraction of the blocks."""
    from accel.kernels.block_mask import BlockSparseMask

    common = dict(dense_warmup_fraction=0.0, dense_layers=(), block_size=8, tile=(1, 2, 2), backend="torch")
    model = tiny_family_model(family)
    reference = _loop(model, family)
    with monkeypatch.context() as patch:
        patch.setattr(BlockSparseMask, "is_full", lambda self: False)
        handle = accel.apply(
            model, accel.SparseAttentionConfig(tau=1.0, min_keep=1.0, max_keep=1.0, **common), num_inference_steps=4
        )
        full = _loop(model, family)
        stats = handle.sessions[0].plugins[0].stats()
        accel.remove(model)
    assert stats["sparse_calls"] > 0 and stats["dense_calls"] == 0
    for a, b in zip(full, reference):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    handle = accel.apply(
        model, accel.SparseAttentionConfig(tau=0.5, min_keep=0.0, max_keep=0.5, **common), num_inference_steps=4
    )
    _loop(model, family)
    stats = handle.sessions[0].plugins[0].stats()
    accel.remove(model)
    assert stats["mean_density"] < 0.8 and stats["layout_fallbacks"] == 0


# ---------------------------------------------------------------------------------------- discovery
@pytest.mark.parametrize("family", [f for f in FAMILIES if f.startswith("auto:")])
def test_discovered_classes_say_so_and_refuse_what_discovery_cannot_know(family):
    import accel.api

    model = tiny_family_model(family)
    accel.api._ANNOUNCED.discard(family)
    with pytest.warns(UserWarning, match="blocks discovered automatically"):
        accel.apply(model, accel.BlockCacheConfig(interval=2), num_inference_steps=STEPS)
    assert accel.summary(model)["denoisers"][type(model).__name__]["discovered"] is True
    accel.remove(model)
    adapter = lookup(model)
    statuses = [plugin_status(adapter, name) for name in ("RASConfig", "SparseAttentionConfig")]
    refused = [s for s in statuses if s is not None]  # RAS is for images, sparse attention for videos
    assert refused and all(not s.supported and "discovered automatically" in s.reason for s in refused)


def test_discovery_reads_the_blocks_of_a_class_it_never_saw():
    """The discovered adapter of a class: its block lists and the attention / feed-forward children."""
    adapter = lookup(tiny_family_model("auto:LatteTransformer3DModel"))
    assert adapter.block_lists == ("transformer_blocks", "temporal_transformer_blocks")
    assert {c.attr for spec in adapter.block_specs for c in spec.components} == {"attn1", "attn2", "ff"}
    with pytest.raises(accel.UnsupportedModelError, match="not a diffusers transformer"):
        lookup(torch.nn.Sequential(torch.nn.Linear(2, 2)))


# ---------------------------------------------------------------------------------------- two experts
def test_two_expert_pipelines_get_the_plugins_on_both_denoisers():
    """Wan 2.2 (a high-noise ``transformer`` and a low-noise ``transformer_2``): the plugins attach to
    both, the step context is shared (one step count), the summary reports each, remove is exact."""
    from accel.pipelines.testing import tiny_denoiser, tiny_pipeline

    tiny = tiny_pipeline("wan")
    tiny.pipe.register_modules(transformer_2=tiny_denoiser("wan", seed=1))
    tiny.pipe.register_to_config(boundary_ratio=0.5)
    with torch.no_grad():
        reference = tiny(**tiny.inputs(seed=0, steps=6))
    accel.apply(tiny.pipe, accel.BlockCacheConfig(interval=2), accel.AdaptiveGuidanceConfig(threshold=2.0, max_step=4))
    with torch.no_grad():
        tiny(**tiny.inputs(seed=0, steps=6))
    summary = accel.summary(tiny.pipe)
    assert set(summary["denoisers"]) == {"transformer", "transformer_2"}
    assert summary["last_call"]["steps"] == 6 and summary["last_call"]["denoiser_calls"] == 12
    high, low = (summary["denoisers"][name]["plugins"]["block_cache"] for name in ("transformer", "transformer_2"))
    assert high["component_calls"] > 0 and low["component_calls"] > 0  # each expert ran its share of the steps
    assert summary["last_call"]["nfe"] < 12  # CFG dropped from step 4, in the low-noise expert
    accel.remove(tiny.pipe)
    with torch.no_grad():
        assert torch.equal(tiny(**tiny.inputs(seed=0, steps=6)), reference)


# ---------------------------------------------------------------------------------------- the matrix
def test_at_least_30_families_and_the_support_matrix_is_current():
    assert len(supported_adapters()) >= 30
    with open(DOCS) as f:
        assert f.read() == markdown(), "docs/models.md is stale: python -m accel.pipelines.support > docs/models.md"
