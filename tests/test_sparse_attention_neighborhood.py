"""Strided, dilated neighbourhood attention (GNA) against NATTEN's ``na3d``, and its block mask.

NATTEN (``pip install natten``, a test extra) runs ``na3d`` on the CPU; the tests that compare with it
skip only where it is absent, and CI installs it. The plugin's pattern runs on the tiny Wan.
"""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch

import accel
from accel.kernels import block_sparse_attention
from accel.kernels.block_mask import BlockSparseMask
from accel.sparse_attention.builders.neighborhood import (
    axis_neighbors,
    neighborhood_attention,
    neighborhood_blocks,
    neighborhood_tokens,
)
from accel.sparse_attention.reorder import SequenceLayout, tile_permutation


@pytest.fixture
def natten():
    return pytest.importorskip("natten", reason="natten (a test extra) is the reference")


#: (grid, kernel, stride, dilation): divisible and non-divisible grids, strides and dilations mixed (NATTEN
#: takes kernels of 2 or more per axis)
CASES = [
    ((4, 6, 5), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((5, 7, 9), (3, 4, 5), (2, 3, 2), (1, 1, 1)),
    ((6, 8, 7), (2, 3, 3), (1, 2, 1), (2, 2, 2)),
    ((4, 9, 10), (4, 3, 2), (4, 3, 2), (1, 3, 2)),
    ((3, 8, 8), (2, 8, 4), (1, 4, 4), (1, 1, 2)),
    ((2, 12, 12), (2, 12, 4), (1, 4, 4), (1, 1, 1)),
]


def _flat(x: torch.Tensor) -> torch.Tensor:
    """NATTEN's ``[B, F, H, W, heads, D]`` -> raster-ordered ``[B, heads, N, D]``."""
    return x.flatten(1, 3).transpose(1, 2)


@pytest.mark.parametrize("grid,kernel,stride,dilation", CASES)
def test_token_exact_neighbourhood_attention_equals_natten(natten, grid, kernel, stride, dilation):
    g = torch.Generator().manual_seed(sum(grid))
    q, k, v = (torch.randn(2, *grid, 2, 8, generator=g) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex attention without compile, on the CPU
        reference = natten.na3d(q, k, v, kernel_size=kernel, stride=stride, dilation=dilation)
        ours = neighborhood_attention(_flat(q), _flat(k), _flat(v), SequenceLayout(*grid), kernel, stride, dilation)
    torch.testing.assert_close(ours.transpose(1, 2).reshape(reference.shape), reference, rtol=1e-5, atol=1e-5)
    tokens = neighborhood_tokens(grid, kernel, stride, dilation)
    assert (tokens.sum(1) == math.prod(kernel)).all()  # every query sees exactly prod(kernel) keys


def test_the_axis_window_shifts_inward_at_the_borders_and_refuses_bad_sizes():
    relation = axis_neighbors(7, 3)
    assert relation[0].nonzero().flatten().tolist() == [0, 1, 2]  # shifted inward, still 3 keys
    assert relation[6].nonzero().flatten().tolist() == [4, 5, 6]
    assert relation[3].nonzero().flatten().tolist() == [2, 3, 4]
    strided = axis_neighbors(8, 4, stride=4)
    assert torch.equal(strided[0], strided[3]) and strided[0].nonzero().flatten().tolist() == [0, 1, 2, 3]
    with pytest.raises(accel.ConfigError, match="stride <= kernel"):
        axis_neighbors(8, 2, stride=3)
    with pytest.raises(accel.ConfigError, match="kernel \\* dilation <= 8"):
        axis_neighbors(8, 5, dilation=2)


#: (grid, tile = stride, kernel): GNA's perfectly block-sparse configurations, and one that is not
BLOCK_CASES = [
    ((2, 12, 12), (1, 4, 4), (1, 12, 4), True),
    ((4, 8, 8), (2, 4, 4), (2, 4, 4), True),
    ((3, 12, 8), (1, 4, 4), (3, 12, 4), True),
    ((2, 12, 12), (1, 4, 4), (1, 8, 8), False),  # an even kernel/stride ratio: windows straddle tiles
]


@pytest.mark.parametrize("grid,tile,kernel,exact", BLOCK_CASES)
def test_the_block_mask_equals_the_token_mask_where_it_claims_to(grid, tile, kernel, exact):
    layout = SequenceLayout(*grid, tile=tile)
    block = math.prod(tile)
    blocks, is_exact = neighborhood_blocks(layout, block, kernel, stride=tile)
    assert is_exact == exact
    perm, _ = tile_permutation(*grid, tile)
    tokens = neighborhood_tokens(grid, kernel, stride=tile)[perm][:, perm]  # in tile order
    expanded = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1)
    assert (expanded | ~tokens).all()  # never drops a pair the token mask keeps
    if exact:
        assert torch.equal(expanded, tokens)
        assert float(blocks.float().mean()) == pytest.approx(math.prod(kernel) / math.prod(grid))
    else:
        assert not torch.equal(expanded, tokens)


def test_block_masks_refuse_blocks_that_are_not_tiles():
    with pytest.raises(accel.ConfigError, match="one block per tile"):
        neighborhood_blocks(SequenceLayout(2, 10, 12, tile=(1, 4, 4)), 16, (1, 4, 4), (1, 4, 4))


@pytest.mark.skipif(
    not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="needs CUDA or TRITON_INTERPRET=1 set before triton is imported",
)
def test_the_triton_kernel_gives_natten_output_in_a_perfectly_block_sparse_configuration(natten):
    """Grid (2, 8, 8), tiles and stride (1, 4, 4) (16-token blocks), kernel (2, 4, 4): each block sees its own
    tile in both frames. The interpreted Triton kernel on the block mask equals NATTEN, at density
    prod(kernel) / prod(grid)."""
    grid, tile, kernel = (2, 8, 8), (1, 4, 4), (2, 4, 4)
    layout = SequenceLayout(*grid, tile=tile)
    blocks, exact = neighborhood_blocks(layout, 16, kernel, stride=tile)
    assert exact
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, *grid, 1, 16, generator=g) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = natten.na3d(q, k, v, kernel_size=kernel, stride=tile)
    perm, inv = tile_permutation(*grid, tile)
    tiled = [_flat(x)[:, :, perm] for x in (q, k, v)]
    mask = BlockSparseMask.from_block_bool(blocks[None, None], 16, 16, 128, 128)
    out, used = block_sparse_attention(*tiled, mask, backend="triton")
    assert used == "triton" and float(mask.density_per_head().mean()) == pytest.approx(32 / 128)
    torch.testing.assert_close(
        out[:, :, inv].transpose(1, 2).reshape(reference.shape), reference, atol=2e-5, rtol=2e-5
    )


def _wan(config):
    from accel.pipelines.testing import tiny_pipeline

    tiny = tiny_pipeline("wan")
    accel.apply(tiny.pipe, config)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = tiny(**tiny.inputs(steps=2, height=64, width=64))
    stats = next(iter(accel.summary(tiny.pipe)["denoisers"].values()))["plugins"]["sparse_attention"]
    return out, stats


def test_the_pattern_runs_block_sparse_where_exact_and_token_exact_elsewhere_with_the_same_output():
    """On the tiny Wan (a 2 x 4 x 4 token grid): tiles and blocks of 16 tokens (one frame) make the
    (1, 4, 4) kernel perfectly block-sparse, and the block kernel runs; tiles of (1, 2, 2) with the
    same blocks do not align, and FlexAttention runs the token mask. Same output, same density."""
    common = dict(pattern="neighborhood", kernel_size=(1, 4, 4), dense_warmup_fraction=0.0, dense_layers=())
    blocked, block_stats = _wan(accel.SparseAttentionConfig(**common, tile=(1, 4, 4), block_size=16, backend="torch"))
    tokens, token_stats = _wan(accel.SparseAttentionConfig(**common, tile=(1, 2, 2), block_size=16, backend="torch"))
    assert block_stats["backends"].get("torch", 0) > 0 and not token_stats["backends"]
    assert block_stats["mean_density"] == token_stats["mean_density"] == pytest.approx(16 / 32)
    torch.testing.assert_close(blocked, tokens, rtol=1e-5, atol=1e-5)


def test_a_kernel_larger_than_the_grid_is_refused_naming_the_axis():
    with pytest.raises(accel.ConfigError, match="neighbourhood axis of 4: needs 1 <= kernel \\* dilation <= 4"):
        _wan(accel.SparseAttentionConfig(pattern="neighborhood", kernel_size=(1, 8, 8), dense_warmup_fraction=0.0))
    with pytest.raises(accel.ConfigError, match="stride \\(1, 4, 4\\) must not exceed kernel_size"):
        accel.SparseAttentionConfig(pattern="neighborhood", kernel_size=(1, 2, 2), stride=(1, 4, 4))
