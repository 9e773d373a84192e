"""Block-sparse attention: mask representation, builders, reordering, searched head patterns, and the plugin on the
tiny Wan / CogVideoX / HunyuanVideo / LTX-Video pipelines."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import accel
from accel.kernels import block_sparse_attention, dense_reference
from accel.pipelines.testing import tiny_pipeline
from accel.sparse_attention import (
    BlockSparseMask,
    PatternSpec,
    SequenceLayout,
    SparseAttentionConfig,
    dense_text,
    force_diagonal,
    pattern_mask,
    tile_permutation,
    to_model_order,
    to_working_order,
    union,
)
from accel.sparse_attention.builders import (
    band_blocks,
    block_scores,
    dynamic_mask,
    keep_by_threshold,
    multi_diagonal_blocks,
    stripe_blocks,
    temporal_blocks,
    window_blocks,
)
from accel.sparse_attention.plugin import _model_order, _working, suffix_lengths
from accel.tuning.sparse_calibration import calibrate_head_patterns

from .plugin_mixin import PluginTesterMixin, Target, at_apply

VIDEO_FAMILIES = ("wan", "cogvideox", "hunyuan_video", "ltx_video")
SMALL = dict(height=64, width=64)  # enough video tokens for several 8-token blocks


def blocks_of(*rows: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in r] for r in rows])


# ====================================================================================== masks
def test_mask_roundtrip_dense_and_density():
    blocks = torch.tensor([[[[1, 0, 1], [0, 0, 0]], [[1, 1, 1], [0, 1, 0]]]], dtype=torch.bool)  # [1,2,2,3]
    mask = BlockSparseMask.from_block_bool(blocks, 8, 4, q_len=10, kv_len=10)
    assert mask.kv_num.tolist() == [[[2, 0], [3, 1]]]
    assert mask.kv_idx[0, 0, 0, :2].tolist() == [0, 2] and mask.kv_idx.dtype == torch.int32
    assert torch.equal(mask.to_block_bool(), blocks)
    dense = mask.to_dense()
    assert dense.shape == (1, 2, 10, 10)
    assert dense[0, 0, :8, :4].all() and not dense[0, 0, :8, 4:8].any() and dense[0, 0, :8, 8:].all()
    assert not dense[0, 0, 8:].any()
    # token-weighted: head 0 keeps 8x4 + 8x2 of 100 pairs, head 1 keeps 8x10 + 2x4
    assert mask.density_per_head()[0].tolist() == pytest.approx([0.48, 0.88])
    assert mask.density() == pytest.approx(0.68)
    assert not mask.is_full() and BlockSparseMask.full(10, 10, 8).is_full()
    with pytest.raises(ValueError, match="key blocks"):
        BlockSparseMask.from_block_bool(blocks, 8, 8, 10, 10)


def test_mask_helpers_union_diagonal_text_truncate():
    a = BlockSparseMask.from_block_bool(blocks_of("1000", "0000", "0000", "0001"), 4, 4, 16, 16)
    b = BlockSparseMask.from_block_bool(blocks_of("0100", "0000", "0000", "0000"), 4, 4, 16, 16)
    assert torch.equal(union(a, b).to_block_bool()[0, 0], blocks_of("1100", "0000", "0000", "0001"))
    assert torch.equal(force_diagonal(b).to_block_bool()[0, 0], blocks_of("1100", "0100", "0010", "0001"))
    empty = BlockSparseMask.from_block_bool(torch.zeros(4, 4, dtype=torch.bool), 4, 4, 14, 14)
    # 5 text tokens last in 14 tokens: tokens 9..13 -> blocks 2 and 3
    last = dense_text(empty, 5, "last").to_block_bool()[0, 0]
    assert torch.equal(last, blocks_of("0011", "0011", "1111", "1111"))
    first = dense_text(empty, 5, "first").to_block_bool()[0, 0]  # tokens 0..4 -> blocks 0 and 1
    assert torch.equal(first, blocks_of("1111", "1111", "1100", "1100"))
    cut = BlockSparseMask.full(16, 16, 4).truncate_kv(9)
    assert cut.kv_len == 9 and cut.num_kv_blocks == 3 and cut.kv_num.max() == 3
    with pytest.raises(ValueError, match="cannot broadcast"):
        BlockSparseMask.full(16, 16, 4, batch=2).expand(3, 1)


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_mask_to_flex_reads_the_block_table():
    from torch.nn.attention.flex_attention import flex_attention

    from accel.kernels.flex import to_flex_block_mask

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 40, 16, generator=g) for _ in range(3))
    blocks = torch.rand(1, 2, 3, 3, generator=g) < 0.5
    mask = BlockSparseMask.from_block_bool(blocks, 16, 16, 40, 40)
    block_mask = to_flex_block_mask(mask)
    assert block_mask.mask_mod is not None
    out = flex_attention(q, k, v, block_mask=block_mask)  # eager flex applies only mask_mod
    torch.testing.assert_close(out, dense_reference(q, k, v, mask), atol=1e-5, rtol=1e-5)


def test_mask_to_image_writes_png(tmp_path):
    from accel.sparse_attention.plotting import save_mask_image

    mask = BlockSparseMask.from_block_bool(torch.eye(6, dtype=torch.bool)[None, None].repeat(1, 3, 1, 1), 4, 4, 24, 24)
    path = save_mask_image(mask, tmp_path / "mask.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


# ====================================================================================== reorder
def test_tile_permutation_roundtrip_and_order():
    perm, inv = tile_permutation(2, 4, 4, (1, 2, 2))
    assert perm[:8].tolist() == [0, 1, 4, 5, 2, 3, 6, 7]  # first 2x2 tile, then the next tile of row 0
    assert torch.equal(perm[inv], torch.arange(32))
    ragged, ragged_inv = tile_permutation(3, 5, 7, (2, 2, 4))
    assert sorted(ragged.tolist()) == list(range(105))
    x = torch.randn(2, 105, 3)
    layout = SequenceLayout(3, 5, 7, tile=(2, 2, 4))
    assert torch.equal(to_model_order(to_working_order(x, layout), layout), x)
    assert tile_permutation(3, 5, 7, (2, 2, 4))[0] is ragged  # cached


def test_layout_moves_text_last_in_working_order():
    layout = SequenceLayout(2, 2, 2, text_len=3, text_position="first", tile=(1, 2, 2))
    model = torch.arange(11)[None, :, None]
    working = to_working_order(model, layout)[0, :, 0]
    assert working[-3:].tolist() == [0, 1, 2]  # text tokens, in order, at the end
    assert sorted(working[:8].tolist()) == list(range(3, 11))
    coords = layout.token_coords()
    assert coords.shape == (8, 3) and coords[:4, 0].tolist() == [0, 0, 0, 0]


def test_working_order_attention_equals_model_order_reference():
    """What the processors do: permute to working order, run sparse, permute back == dense masked
    attention with the mask mapped back to model order (text first and last)."""
    for position in ("first", "last"):
        layout = SequenceLayout(2, 4, 4, text_len=5, text_position=position, tile=(1, 2, 2))
        g = torch.Generator().manual_seed(1)
        q, k, v = (torch.randn(2, layout.seq_len, 3, 8, generator=g) for _ in range(3))  # [B,N,H,D]
        mask = dense_text(
            force_diagonal(
                BlockSparseMask.from_block_bool(
                    torch.rand(2, 3, 5, 5, generator=g) < 0.3, 8, 8, layout.seq_len, layout.seq_len
                )
            ),
            5,
            "last",
        )
        out, _ = block_sparse_attention(*(_working(t, layout, 1) for t in (q, k, v)), mask, backend="torch")
        out = _model_order(out, layout, 1)
        _, inv = layout.permutation()
        dense = mask.to_dense()[:, :, inv][:, :, :, inv]
        ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=dense)
        torch.testing.assert_close(out, ref.transpose(1, 2), atol=1e-5, rtol=1e-5)


# ====================================================================================== builders
def test_keep_by_threshold_on_hand_made_scores():
    scores = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.5, 0.15, 0.3]])
    assert keep_by_threshold(scores, 0.8).tolist() == [[True, True, False, False], [False, True, False, True]]
    assert keep_by_threshold(scores, 0.9)[0].tolist() == [True, True, True, False]
    assert keep_by_threshold(scores, 0.4)[0].tolist() == [True, False, False, False]
    # clamps: at least ceil(0.5 * 4) = 2 blocks, at most floor(0.5 * 4) = 2 blocks
    assert keep_by_threshold(scores, 0.4, min_keep=0.5)[0].tolist() == [True, True, False, False]
    assert keep_by_threshold(scores, 0.99, max_keep=0.5)[0].tolist() == [True, True, False, False]
    assert keep_by_threshold(scores, 1.0).all()
    assert keep_by_threshold(scores, 0.1, max_keep=0.1).sum(-1).tolist() == [1, 1]  # never fewer than one
    with pytest.raises(ValueError, match="min_keep"):
        keep_by_threshold(scores, 0.5, min_keep=0.6, max_keep=0.5)


@pytest.mark.parametrize("method", ["mean", "sample"])
def test_block_scores_find_the_matching_key_block(method):
    d, block = 8, 4
    basis = torch.eye(d) * 6.0
    # query block i is made of copies of direction i; key block j of direction (3 - j)
    q = torch.cat([basis[i].expand(block, d) for i in range(4)])[None, None]
    k = torch.cat([basis[3 - j].expand(block, d) for j in range(4)])[None, None]
    scores = block_scores(q, k, block, block, method, samples=2)
    assert scores.shape == (1, 1, 4, 4)
    torch.testing.assert_close(scores.sum(-1), torch.ones(1, 1, 4))
    assert scores[0, 0].argmax(-1).tolist() == [3, 2, 1, 0]
    mask = dynamic_mask(q, k, block, tau=0.5, method=method, samples=2)
    assert torch.equal(mask.to_block_bool()[0, 0], torch.eye(4, dtype=torch.bool).flip(-1))


def test_static_patterns_on_small_grids():
    frames = SequenceLayout(4, 1, 1)  # one token per frame, block 1: blocks are tokens
    assert torch.equal(window_blocks(frames, 1, 1, (1, 0, 0)), blocks_of("1100", "1110", "0111", "0011"))
    per_frame = SequenceLayout(3, 2, 2, tile=(1, 2, 2))  # block 4 = one frame
    assert torch.equal(temporal_blocks(per_frame, 4, 4, 0), torch.eye(3, dtype=torch.bool))
    assert torch.equal(temporal_blocks(per_frame, 4, 4, 1), blocks_of("110", "111", "011"))
    assert torch.equal(band_blocks(frames, 1, 1, 1), blocks_of("1100", "1110", "0111", "0011"))
    grid = SequenceLayout(2, 2, 2)  # tokens: raster order, 4 per frame
    multi = multi_diagonal_blocks(grid, 1, 1, (0, 0))  # same (row, column) in every frame
    assert int(multi.sum()) == 16 and bool(multi[0, 4]) and not bool(multi[0, 1])
    stripe = stripe_blocks(SequenceLayout(3, 1, 2, tile=(1, 1, 2)), 2, 2, frames=1, width=0)
    assert torch.equal(stripe, blocks_of("100", "110", "101"))
    with pytest.raises(ValueError, match="radius"):
        window_blocks(frames, 1, 1, (1, 1))


def test_pattern_specs_and_per_head_masks():
    assert str(PatternSpec.parse("window:1,2,3")) == "window:1,2,3"
    with pytest.raises(ValueError, match="unknown pattern"):
        PatternSpec.parse("radial:2")
    with pytest.raises(ValueError, match="takes 3"):
        PatternSpec.parse("window:1,2")
    layout = SequenceLayout(3, 2, 2, text_len=3, tile=(1, 2, 2))  # 12 video + 3 text tokens
    mask = pattern_mask(["temporal:0", "skip", "dense"], layout, 4)
    assert mask.heads == 3
    blocks = mask.to_block_bool()[0]
    assert not blocks[1].any()  # skipped head: no block, zero output
    assert blocks[2].all()
    assert blocks[0, :, 3].all() and blocks[0, 3].all()  # text block row and column dense
    assert torch.equal(blocks[0, :3, :3], torch.eye(3, dtype=torch.bool))


# ====================================================================================== config
def test_config_validation_names_allowed_values():
    with pytest.raises(
        accel.ConfigError, match=r"pattern must be one of \['dynamic', 'window', 'searched', 'neighborhood'\]"
    ):
        SparseAttentionConfig(pattern="radial")
    with pytest.raises(accel.ConfigError, match="backend must be one of"):
        SparseAttentionConfig(backend="cuda")
    with pytest.raises(accel.ConfigError, match="block_size must be one of"):
        SparseAttentionConfig(block_size=48)
    with pytest.raises(accel.ConfigError, match="must not exceed max_keep"):
        SparseAttentionConfig(min_keep=0.6, max_keep=0.5)
    with pytest.raises(accel.ConfigError, match="needs patterns_path"):
        SparseAttentionConfig(pattern="searched")
    with pytest.raises(accel.ConfigError, match="tau"):
        SparseAttentionConfig(tau=0.0)
    with pytest.raises(accel.ConfigError, match="window must be three"):
        SparseAttentionConfig(window=(1, 2))
    config = SparseAttentionConfig(tau=0.8, dense_layers=(0, 1))
    assert SparseAttentionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert accel.SparseAttentionConfig is SparseAttentionConfig


def test_suffix_padding_lengths():
    assert suffix_lengths(None, 5) is None
    assert suffix_lengths(torch.ones(2, 1, 1, 5, dtype=torch.bool), 5) is None
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)[:, None, None]
    assert suffix_lengths(mask, 5) == [3, 4]
    assert suffix_lengths(torch.tensor([[1, 0, 1, 1, 1]], dtype=torch.bool), 5) is False


# ====================================================================================== plugin on tiny pipelines
def _run(tiny, **kw):
    kwargs = dict(SMALL)
    kwargs.update(kw)
    with torch.no_grad():
        return tiny(**tiny.inputs(**kwargs))


FULL = dict(
    tau=1.0,
    min_keep=1.0,
    max_keep=1.0,
    dense_warmup_fraction=0.0,
    dense_layers=(),
    block_size=8,
    tile=(1, 2, 2),
    backend="torch",
)
SPARSE = dict(
    tau=0.5,
    min_keep=0.0,
    max_keep=0.5,
    dense_warmup_fraction=0.0,
    dense_layers=(),
    block_size=8,
    tile=(1, 2, 2),
    backend="torch",
)


def _plugin(handle):
    return handle.sessions[0].plugins[0]


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_density_one_equals_stock_output(family):
    tiny = tiny_pipeline(family)
    stock = _run(tiny, steps=2)
    handle = accel.apply(tiny.pipe, SparseAttentionConfig(**FULL))
    plugin = _plugin(handle)
    modules = handle.sessions[0].adapter.attention_modules(tiny.denoiser)
    assert len(plugin.processors) == len(modules) > 0
    assert all(m.processor is p for p, (_, m, _) in zip(plugin.processors, modules))
    out = _run(tiny, steps=2)
    stats = plugin.stats()
    assert stats["dense_calls"] > 0 and stats["sparse_calls"] == 0 and stats["mean_density"] == 1.0
    assert plugin.state.grid is not None and stats["layout_fallbacks"] == 0
    assert torch.equal(out, stock)
    accel.remove(tiny.pipe)


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_sparse_path_with_full_mask_matches_stock(family, monkeypatch):
    """Force the block-sparse path (reorder, text placement, kernel, inverse reorder) with every
    block active: the output must match the stock pipeline up to float rounding."""
    tiny = tiny_pipeline(family)
    stock = _run(tiny, steps=2)
    monkeypatch.setattr(BlockSparseMask, "is_full", lambda self: False)
    handle = accel.apply(tiny.pipe, SparseAttentionConfig(**FULL))
    out = _run(tiny, steps=2)
    stats = _plugin(handle).stats()
    assert (
        stats["sparse_calls"] > 0
        and stats["dense_calls"] == 0
        and stats["backends"] == {"torch": stats["sparse_calls"]}
    )
    torch.testing.assert_close(out, stock, atol=1e-4, rtol=1e-4)
    accel.remove(tiny.pipe)


@pytest.mark.parametrize("family", ["hunyuan_video"])  # wan: TestSparseAttentionPlugin (the shared contract)
def test_apply_remove_restores_bit_identical_outputs(family):
    tiny = tiny_pipeline(family)
    stock = _run(tiny, steps=2)
    modules = [m for _, m, _ in accel.pipelines.registry.lookup(tiny.denoiser).attention_modules(tiny.denoiser)]
    originals = [m.processor for m in modules]
    handle = accel.apply(tiny.pipe, SparseAttentionConfig(**SPARSE))
    sparse = _run(tiny, steps=2)
    assert _plugin(handle).stats()["sparse_calls"] > 0
    assert not torch.equal(sparse, stock)
    assert torch.isfinite(sparse).all()
    accel.remove(tiny.pipe)
    assert all(m.processor is p for m, p in zip(modules, originals))
    assert torch.equal(_run(tiny, steps=2), stock)


def test_summary_reports_densities_schedule_and_flops():
    tiny = tiny_pipeline("wan")
    accel.apply(tiny.pipe, SparseAttentionConfig(**dict(SPARSE, dense_warmup_fraction=0.25, dense_layers=(0,))))
    _run(tiny, steps=4)
    summary = accel.summary(tiny.pipe)
    stats = summary["denoisers"]["transformer"]["plugins"]["sparse_attention"]
    assert stats["steps"] == [0, 1, 2, 3]
    assert stats["density_by_step"][0] == 1.0  # first 25% of 4 steps: dense
    assert all(stats["density_by_step"][s] < 1.0 for s in (1, 2, 3))
    layers = stats["density_by_layer_step"]
    assert layers["blocks.0.attn1"] == [1.0, 1.0, 1.0, 1.0]  # dense layer
    assert all(d < 1.0 for d in layers["blocks.1.attn1"][1:])
    assert 0.0 < stats["attention_flops_saved"] < 1.0
    assert stats["attention_flops_computed"] < stats["attention_flops_dense"]
    assert stats["dense_calls"] == 2 * 3 + 2 * 3  # step 0: 3 layers x 2 branches; steps 1-3: layer 0 x 2 branches
    assert "sparse_attention" in str(summary) and "density_by_layer" in str(summary)
    accel.remove(tiny.pipe)


def test_masks_reused_across_steps_per_branch():
    tiny = tiny_pipeline("wan")  # separate CFG calls: branches "cond" and "uncond"
    handle = accel.apply(tiny.pipe, SparseAttentionConfig(**dict(SPARSE, mask_reuse_steps=2)))
    _run(tiny, steps=4)
    stats = _plugin(handle).stats()
    assert stats["masks_built"] == 3 * 2 * 2  # 3 layers x 2 branches x steps {0, 2}
    assert stats["masks_reused"] == 3 * 2 * 2  # steps {1, 3}
    accel.remove(tiny.pipe)


def test_hunyuan_padded_text_keys_match_stock(monkeypatch):
    tiny = tiny_pipeline("hunyuan_video")
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0]])
    kwargs = dict(steps=2, batch=2, guidance=1.0, prompt_attention_mask=mask)
    stock = _run(tiny, **kwargs)
    monkeypatch.setattr(BlockSparseMask, "is_full", lambda self: False)
    handle = accel.apply(tiny.pipe, SparseAttentionConfig(**FULL))
    out = _run(tiny, **kwargs)
    assert _plugin(handle).stats()["sparse_calls"] > 0
    torch.testing.assert_close(out, stock, atol=1e-4, rtol=1e-4)
    accel.remove(tiny.pipe)


def test_window_pattern_and_alias():
    tiny = tiny_pipeline("ltx_video")
    handle = accel.apply_sparse_attention(
        tiny.pipe,
        SparseAttentionConfig(
            pattern="window",
            window=(0, 2, 2),
            block_size=8,
            tile=(1, 2, 4),
            dense_warmup_fraction=0.0,
            dense_layers=(),
            backend="torch",
        ),
    )
    out = _run(tiny, steps=2)
    stats = _plugin(handle).stats()
    assert torch.isfinite(out).all() and stats["sparse_calls"] > 0
    grid = _plugin(handle).state.grid
    expected = pattern_mask(["window:0,2,2"], SequenceLayout(*grid, tile=(1, 2, 4)), 8).density()
    assert stats["mean_density"] == pytest.approx(expected, abs=1e-4) and expected < 1.0
    accel.remove(tiny.pipe)


def test_calibrate_head_patterns_then_apply_them(tmp_path):
    tiny = tiny_pipeline("cogvideox")
    stock = _run(tiny, steps=2)
    plan = calibrate_head_patterns(
        tiny.pipe,
        lambda: _run(tiny, steps=2),
        candidates=["diagonal:1", "temporal:0"],
        error_bound=0.5,
        block_size=8,
        tile=(1, 2, 2),
        sample_rows=32,
    )
    assert accel.get_handle(tiny.pipe) is None
    assert sorted(plan.layers) == [0, 1, 2] and all(len(h) == 2 for h in plan.layers.values())
    assert plan.meta["observations"] > 0
    path = plan.save(tmp_path / "cog.json")
    assert torch.equal(_run(tiny, steps=2), stock)  # calibration left nothing behind
    handle = accel.apply(
        tiny.pipe,
        SparseAttentionConfig(
            pattern="searched", patterns_path=str(path), dense_warmup_fraction=0.0, dense_layers=(), backend="torch"
        ),
    )
    out = _run(tiny, steps=2)
    stats = _plugin(handle).stats()
    sparse_layers = [layer for layer, heads in plan.layers.items() if any(h != "dense" for h in heads)]
    assert sparse_layers
    assert stats["sparse_calls"] == 2 * len(sparse_layers)  # stacked CFG: one call per step and layer
    assert torch.isfinite(out).all()
    accel.remove(tiny.pipe)


def test_unsupported_family_names_the_supported_ones():
    tiny = tiny_pipeline("pixart")
    with pytest.raises(accel.UnsupportedModelError) as err:
        accel.apply(tiny.pipe, SparseAttentionConfig())
    for family in VIDEO_FAMILIES:
        assert family in str(err.value)
    assert accel.get_handle(tiny.pipe) is None


# ------------------------------------------------------------------------------ plugin contract
class TestSparseAttentionPlugin(PluginTesterMixin):
    """The shared plugin contract (tests/plugin_mixin.py) on the tiny Wan pipeline (64x64, 5 frames), 3 steps."""

    config_cls = SparseAttentionConfig
    plugin_name = "sparse_attention"
    summary_keys = (
        "pattern",
        "mean_density",
        "density_by_step",
        "density_by_layer",
        "density_by_layer_step",
        "steps",
        "attention_flops_dense",
        "attention_flops_computed",
        "attention_flops_saved",
        "sparse_calls",
        "dense_calls",
        "backends",
        "masks_built",
        "masks_reused",
        "layout_fallbacks",
    )
    unsupported_family = "pixart"
    bad_configs = [
        (
            {"pattern": "radial"},
            "SparseAttentionConfig.pattern must be one of ['dynamic', 'window', 'searched', 'neighborhood']",
        ),
        ({"pattern": "searched"}, "SparseAttentionConfig.pattern='searched' needs patterns_path"),
        ({"tau": 0.0}, "SparseAttentionConfig.tau must be a number in (0.0, 1.0], got 0.0"),
        ({"min_keep": 0.6}, "SparseAttentionConfig.min_keep (0.6) must not exceed max_keep (0.5)"),
        ({"block_size": 48}, "SparseAttentionConfig.block_size must be one of [4, 8, 16, 32, 64, 128, 256], got 48"),
        ({"tile": (1, 2, 0)}, "SparseAttentionConfig.tile[] must be an integer in [1, inf], got 0"),
        ({"window": (1, 2)}, "SparseAttentionConfig.window must be three integers"),
        ({"mask_reuse_steps": 0}, "SparseAttentionConfig.mask_reuse_steps must be an integer in [1, inf], got 0"),
        ({"backend": "cuda"}, "SparseAttentionConfig.backend must be one of ['auto', 'triton', 'flex', 'torch']"),
        (
            {"block_size": 64.0},
            "SparseAttentionConfig.block_size must be one of [4, 8, 16, 32, 64, 128, 256], got 64.0",
        ),
        at_apply(
            {"pattern": "searched", "patterns_path": "missing_plan.json"},
            "missing_plan.json",
            error=accel.NotFoundError,
        ),
    ]
    identity_stats = {"sparse_calls": 0, "mean_density": 1.0, "attention_flops_saved": 0.0}

    def make_target(self):
        return Target.pipeline("wan", steps=3, **SMALL)

    def config(self):
        return SparseAttentionConfig(**SPARSE)

    def identity_config(self):
        return SparseAttentionConfig(**FULL)

    def check_active(self, stats, summary):
        assert stats["sparse_calls"] == 3 * 2 * 3  # 3 layers x 2 CFG calls x 3 steps, none dense
        assert stats["dense_calls"] == 0 and stats["backends"] == {"torch": stats["sparse_calls"]}
        assert stats["mean_density"] < 1.0 and 0.0 < stats["attention_flops_saved"] < 1.0
