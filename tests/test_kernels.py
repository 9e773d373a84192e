"""Block-sparse attention kernels against the dense masked reference.

On machines without CUDA, ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before triton is
imported, so the Triton kernel runs in the interpreter on CPU tensors (about 10 ms per tile: every
case here stays under ~256 active tiles).
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from accel.kernels import (
    BackendUnavailableError,
    backend_status,
    block_sparse_attention,
    dense_reference,
    gather_block_sparse,
)
from accel.kernels.block_mask import BlockSparseMask
from accel.sparse_attention.builders.combine import dense_text

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(
    not (torch.cuda.is_available() or INTERPRETED),
    reason="needs CUDA or TRITON_INTERPRET=1 set before triton is imported",
)


def random_mask(
    b: int, h: int, n: int, block: int, density: float, seed: int = 0, empty_rows: int = 1, kv_len: int | None = None
) -> BlockSparseMask:
    """Random block mask; ``empty_rows`` query blocks of head 0 get no key block at all."""
    kv_len = n if kv_len is None else kv_len
    g = torch.Generator().manual_seed(seed)
    mb, nb = math.ceil(n / block), math.ceil(kv_len / block)
    blocks = torch.rand(b, h, mb, nb, generator=g) < density
    blocks[..., 0] |= ~blocks.any(-1)  # every other row keeps at least one block
    for r in range(empty_rows):
        blocks[0, 0, (2 * r + 1) % mb] = False
    return BlockSparseMask.from_block_bool(blocks, block, block, n, kv_len)


def qkv(b: int, h: int, n: int, d: int, dtype: torch.dtype, seed: int = 0, kv_len: int | None = None):
    g = torch.Generator().manual_seed(seed)
    kv_len = n if kv_len is None else kv_len
    q = torch.randn(b, h, n, d, generator=g)
    k = torch.randn(b, h, kv_len, d, generator=g)
    v = torch.randn(b, h, kv_len, d, generator=g)
    return q.to(DEVICE, dtype), k.to(DEVICE, dtype), v.to(DEVICE, dtype)


def active_tiles(mask: BlockSparseMask) -> int:
    return int(mask.kv_num.sum())


TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


# ---------------------------------------------------------------------------------- reference
def test_dense_reference_matches_sdpa_and_zeroes_empty_rows():
    q, k, v = qkv(1, 2, 70, 16, torch.float32)
    full = BlockSparseMask.full(70, 70, 16, heads=2)
    torch.testing.assert_close(dense_reference(q, k, v, full), F.scaled_dot_product_attention(q, k, v))
    mask = random_mask(1, 2, 70, 16, 0.4, empty_rows=1)
    out = dense_reference(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert out[0, 0, 16:32].abs().max() == 0  # query block 1 of head 0 is empty
    assert out[0, 1, 16:32].abs().max() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gather_matches_reference(dtype):
    q, k, v = qkv(2, 3, 100, 24, dtype, kv_len=90)
    mask = random_mask(2, 3, 100, 16, 0.35, kv_len=90)
    ref = dense_reference(q.float(), k.float(), v.float(), mask)
    out = gather_block_sparse(q, k, v, mask, max_elements=4096)  # tiny chunks: exercises the chunk loop
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=TOL[dtype], rtol=TOL[dtype])


def test_broadcast_mask_over_batch_and_heads():
    q, k, v = qkv(2, 3, 64, 16, torch.float32)
    mask = random_mask(1, 1, 64, 16, 0.5, empty_rows=0)
    out, used = block_sparse_attention(q, k, v, mask, backend="torch")
    assert used == "torch"
    torch.testing.assert_close(out, dense_reference(q, k, v, mask.expand(2, 3)))


# ---------------------------------------------------------------------------------- triton
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("head_dim", [32, 64])
def test_triton_matches_reference_random_mask_with_empty_rows(dtype, head_dim):
    n = 200  # ragged: 4 blocks of 64, the last one partial
    q, k, v = qkv(1, 2, n, head_dim, dtype, seed=1)
    mask = random_mask(1, 2, n, 64, 0.5, seed=2, empty_rows=1)
    assert active_tiles(mask) <= 256
    out, used = block_sparse_attention(q, k, v, mask, backend="triton")
    assert used == "triton" and out.dtype == dtype and out.shape == q.shape
    ref = dense_reference(q.float(), k.float(), v.float(), mask)
    torch.testing.assert_close(out.float(), ref, atol=TOL[dtype], rtol=TOL[dtype])
    assert out[0, 0, 64:128].abs().max() == 0  # the empty row gives zeros, not NaN


@needs_triton
@pytest.mark.parametrize("text_len,position", [(13, "last"), (21, "first")])
def test_triton_ragged_text_tokens(text_len, position):
    """A joint sequence with a ragged number of text tokens: text rows/columns dense, the rest sparse."""
    video = 96
    n = video + text_len
    q, k, v = qkv(1, 2, n, 32, torch.float16, seed=3)
    mask = dense_text(random_mask(1, 2, n, 16, 0.2, seed=4, empty_rows=0), text_len, position)
    assert active_tiles(mask) <= 256
    out, _ = block_sparse_attention(q, k, v, mask, backend="triton")
    ref = dense_reference(q.float(), k.float(), v.float(), mask)
    torch.testing.assert_close(out.float(), ref, atol=4e-3, rtol=4e-3)
    text = slice(0, text_len) if position == "first" else slice(n - text_len, n)
    # text queries see every key: equal to plain dense attention on those rows
    dense = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    torch.testing.assert_close(out.float()[:, :, text], dense[:, :, text], atol=4e-3, rtol=4e-3)


@needs_triton
def test_triton_bf16_and_odd_head_dim_and_strided_inputs():
    """bf16 (up-cast right after the loads under the interpreter), head dim 40 (padded), [B,N,H,D] views."""
    g = torch.Generator().manual_seed(5)
    base = [torch.randn(1, 80, 2, 40, generator=g).to(DEVICE, torch.bfloat16) for _ in range(3)]
    q, k, v = (t.transpose(1, 2) for t in base)  # non-contiguous [B,H,N,D]
    mask = random_mask(1, 2, 80, 16, 0.5, seed=6)
    out, _ = block_sparse_attention(q, k, v, mask, backend="triton")
    ref = dense_reference(q.float(), k.float(), v.float(), mask)
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


@needs_triton
def test_triton_cross_lengths_and_dense_mask():
    q, k, v = qkv(2, 1, 48, 64, torch.float32, seed=7, kv_len=72)
    mask = BlockSparseMask.full(48, 72, 16, batch=2)
    out, _ = block_sparse_attention(q, k, v, mask, backend="triton")
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=2e-5, rtol=2e-5)


def test_triton_rejects_small_blocks_with_reason():
    q, k, v = qkv(1, 1, 32, 16, torch.float32)
    mask = BlockSparseMask.full(32, 32, 8)
    reason = backend_status(q, mask)["triton"]
    assert reason is not None
    with pytest.raises(BackendUnavailableError, match="triton"):
        block_sparse_attention(q, k, v, mask, backend="triton")


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="GPU-only: autotuned Triton kernel in bf16 on CUDA "
    "(the CPU path is covered by the interpreter tests above)",
)
def test_triton_gpu_bf16_video_shape():  # pragma: no cover - GPU only
    q, k, v = qkv(1, 4, 1000, 128, torch.bfloat16, seed=8)
    mask = random_mask(1, 4, 1000, 64, 0.3, seed=9)
    out, used = block_sparse_attention(q, k, v, mask)
    assert used == "triton"
    ref = dense_reference(q.float(), k.float(), v.float(), mask)
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


# ---------------------------------------------------------------------------------- flex and dispatch
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_matches_reference_compiled_and_eager():
    from accel.kernels.flex import flex_block_sparse_attention

    q, k, v = qkv(1, 2, 72, 16, torch.float32, seed=10)
    mask = random_mask(1, 2, 72, 16, 0.4, seed=11, empty_rows=1)
    ref = dense_reference(q, k, v, mask)
    eager = flex_block_sparse_attention(q, k, v, mask, compiled=False)
    torch.testing.assert_close(eager, ref, atol=2e-5, rtol=2e-5)
    out, used = block_sparse_attention(q, k, v, mask, backend="flex")
    assert used == "flex"
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=2e-5)
    # a second mask of the same shape reuses the compiled kernel and is still exact
    mask2 = random_mask(1, 2, 72, 16, 0.7, seed=12, empty_rows=0)
    out2, _ = block_sparse_attention(q, k, v, mask2, backend="flex")
    torch.testing.assert_close(out2, dense_reference(q, k, v, mask2), atol=2e-5, rtol=2e-5)
    out3, used = block_sparse_attention(q, k, v, mask2)  # auto: triton on CUDA, compiled flex on CPU
    assert used == ("triton" if torch.cuda.is_available() else "flex")
    torch.testing.assert_close(out3, out2, atol=2e-5, rtol=2e-5)


def test_auto_dispatch_reports_backend():
    q, k, v = qkv(1, 2, 64, 16, torch.float32)
    out, used = block_sparse_attention(q, k, v, BlockSparseMask.full(64, 64, 16))
    assert used == "sdpa"
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    status = backend_status(q, random_mask(1, 2, 64, 16, 0.5))
    assert status["torch"] is None
    with pytest.raises(ValueError, match="backend must be one of"):
        block_sparse_attention(q, k, v, BlockSparseMask.full(64, 64, 16), backend="cuda")
    with pytest.raises(ValueError, match="mask covers"):
        block_sparse_attention(q, k, v, BlockSparseMask.full(32, 32, 16))


def test_flop_counters_see_the_attention_the_mask_keeps():
    # the torch fallback gathers every row's key blocks up to the longest row (padding), and the GPU kernels
    # are invisible to torch's counter; counted through accel's op, the FLOPs are the mask's share of dense
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 64, 16, generator=g) for _ in range(3))
    blocks = torch.eye(4, dtype=torch.bool)[None, None].repeat(2, 2, 1, 1)
    blocks[..., 0] = True  # the longest row has 2 blocks, most have 2, the first 1
    mask = BlockSparseMask.from_block_bool(blocks, 16, 16, 64, 64)
    with FlopCounterMode(display=False) as counter:
        out, used = block_sparse_attention(q, k, v, mask)
    dense = 4 * 16 * 64 * 64 * 2 * 2  # 4 D per (query, key) pair, B = H = 2
    assert used == "torch" and counter.get_total_flops() == round(mask.density() * dense)
    torch.testing.assert_close(out, dense_reference(q, k, v, mask), atol=1e-5, rtol=1e-5)
