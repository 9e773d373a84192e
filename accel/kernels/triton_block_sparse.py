"""Triton block-sparse FlashAttention forward over per-query-block lists of key blocks.

One program per (query tile, batch x head) loads its query tile once, then loops over the
``kv_num`` key blocks listed in ``kv_idx`` for its mask row, keeping FlashAttention's online
softmax (running max, running sum, rescaled accumulator, exp2) in fp32 (FlashAttention-2,
arXiv 2307.08691; the index-list layout of VSA, arXiv 2505.13389, and FlexAttention).

* Inputs fp16, bf16 or fp32, any strides; accumulation in fp32; output in the input dtype.
* Head dims up to 256 (padded to a power of two >= 16 with masked loads, so 32/64/128 and
  others work); ragged sequence ends are masked; rows without key blocks give zeros.
* Mask blocks must be powers of two >= 16; on GPU the kernel tile is autotuned among sizes
  that divide the mask block (and num_warps / num_stages).
* Under the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors) bf16 arithmetic is wrong
  (values are treated as raw uint16), so every load is up-cast to fp32 right away; the
  interpreter costs about 10 ms per 64x64 tile. The variable must be set before ``triton``
  is imported: this module reads it once, at import.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..errors import StateError
from .block_mask import BlockSparseMask

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _block_sparse_fwd(
    Q,
    K,
    V,
    Out,
    KV_IDX,
    KV_NUM,
    sm_scale,
    s_qb,
    s_qh,
    s_qn,
    s_qd,
    s_kb,
    s_kh,
    s_kn,
    s_kd,
    s_vb,
    s_vh,
    s_vn,
    s_vd,
    s_ob,
    s_oh,
    s_on,
    s_od,
    s_ib,
    s_ih,
    s_im,
    s_nb,
    s_nh,
    H,
    N_Q,
    N_KV,
    HEAD_D,
    MASK_M: tl.constexpr,
    MASK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    row = (pid_m * BLOCK_M) // MASK_M

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    d_ok = offs_d < HEAD_D

    q = tl.load(
        Q + b * s_qb + h * s_qh + offs_m[:, None] * s_qn + offs_d[None, :] * s_qd,
        mask=(offs_m[:, None] < N_Q) & d_ok[None, :],
        other=0.0,
    )
    if UPCAST:
        q = q.to(tl.float32)
    qk_scale = sm_scale * 1.4426950408889634

    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    num = tl.load(KV_NUM + b * s_nb + h * s_nh + row)
    idx_row = KV_IDX + b * s_ib + h * s_ih + row * s_im
    k_base = K + b * s_kb + h * s_kh
    v_base = V + b * s_vb + h * s_vh
    for i in range(0, num):
        kb = tl.load(idx_row + i)
        for sub in tl.static_range(MASK_N // BLOCK_N):
            cols = kb * MASK_N + sub * BLOCK_N + offs_n
            c_ok = cols < N_KV
            k = tl.load(
                k_base + cols[None, :] * s_kn + offs_d[:, None] * s_kd, mask=c_ok[None, :] & d_ok[:, None], other=0.0
            )
            v = tl.load(
                v_base + cols[:, None] * s_vn + offs_d[None, :] * s_vd, mask=c_ok[:, None] & d_ok[None, :], other=0.0
            )
            if UPCAST:
                k = k.to(tl.float32)
                v = v.to(tl.float32)
            if IEEE:
                qk = tl.dot(q, k, input_precision="ieee")
            else:
                qk = tl.dot(q, k)
            qk = tl.where(c_ok[None, :], qk * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(qk - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            if IEEE:
                pv = tl.dot(p.to(v.dtype), v, input_precision="ieee")
            else:
                pv = tl.dot(p.to(v.dtype), v)
            acc = acc * alpha[:, None] + pv
            m_i = m_new

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(
        Out + b * s_ob + h * s_oh + offs_m[:, None] * s_on + offs_d[None, :] * s_od,
        out.to(Out.dtype.element_ty),
        mask=(offs_m[:, None] < N_Q) & d_ok[None, :],
    )


def _prune(configs, named_args, **kwargs):  # pragma: no cover - GPU only
    mask_m = kwargs.get("MASK_M", named_args.get("MASK_M"))
    mask_n = kwargs.get("MASK_N", named_args.get("MASK_N"))
    kept = [
        c
        for c in configs
        if c.kwargs["BLOCK_M"] <= mask_m
        and mask_m % c.kwargs["BLOCK_M"] == 0
        and c.kwargs["BLOCK_N"] <= mask_n
        and mask_n % c.kwargs["BLOCK_N"] == 0
    ]
    if kept:
        return kept
    return [triton.Config({"BLOCK_M": mask_m, "BLOCK_N": mask_n}, num_warps=4, num_stages=2)]


_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm in (64, 128)
    for bn in (32, 64, 128)
    for w in (4, 8)
    for s in (2, 3, 4)
    if not (bm == 128 and bn == 128 and s == 4)
]

_block_sparse_fwd_tuned = triton.autotune(
    configs=_CONFIGS,
    key=["MASK_M", "MASK_N", "HEAD_DIM", "UPCAST", "IEEE"],
    prune_configs_by={"early_config_prune": _prune},
)(_block_sparse_fwd)


def unsupported_reason(q: torch.Tensor, mask: BlockSparseMask) -> str | None:
    """Why this kernel cannot run ``q`` with ``mask`` here, or None if it can."""
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"dtype {q.dtype} (needs float16, bfloat16 or float32)"
    if not q.is_cuda and not INTERPRET:
        return "tensors are on the CPU and TRITON_INTERPRET=1 was not set before triton was imported"
    for name, size in (("block_m", mask.block_m), ("block_n", mask.block_n)):
        if size < 16 or size & (size - 1):
            return f"mask {name}={size} (needs a power of two >= 16)"
    if q.shape[-1] > 256:
        return f"head dim {q.shape[-1]} (needs <= 256)"
    return None


def triton_block_sparse_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockSparseMask, scale: float | None = None
) -> torch.Tensor:
    """``[B,H,Nq,D]`` block-sparse attention; inputs ``[B,H,N,D]`` of one dtype on one device."""
    reason = unsupported_reason(q, mask)
    if reason is not None:
        raise StateError(f"the Triton block-sparse kernel cannot run: {reason}")
    b, h, nq, d = q.shape
    nk = k.shape[2]
    m = mask.expand(b, h).to(q.device)
    kv_idx = m.kv_idx.contiguous()
    kv_num = m.kv_num.contiguous()
    out = torch.empty_like(q)
    head_dim = max(16, triton.next_power_of_2(d))
    scale = d**-0.5 if scale is None else float(scale)
    upcast = INTERPRET
    ieee = q.dtype == torch.float32
    args = (
        q,
        k,
        v,
        out,
        kv_idx,
        kv_num,
        scale,
        *q.stride(),
        *k.stride(),
        *v.stride(),
        *out.stride(),
        kv_idx.stride(0),
        kv_idx.stride(1),
        kv_idx.stride(2),
        kv_num.stride(0),
        kv_num.stride(1),
        h,
        nq,
        nk,
        d,
    )
    if INTERPRET or not q.is_cuda:
        grid = (triton.cdiv(nq, m.block_m), b * h)
        _block_sparse_fwd[grid](
            *args,
            MASK_M=m.block_m,
            MASK_N=m.block_n,
            BLOCK_M=m.block_m,
            BLOCK_N=m.block_n,
            HEAD_DIM=head_dim,
            UPCAST=upcast,
            IEEE=ieee,
        )
    else:  # pragma: no cover - GPU only
        grid = lambda meta: (triton.cdiv(nq, meta["BLOCK_M"]), b * h)  # noqa: E731
        _block_sparse_fwd_tuned[grid](
            *args, MASK_M=m.block_m, MASK_N=m.block_n, HEAD_DIM=head_dim, UPCAST=upcast, IEEE=ieee
        )
    return out
