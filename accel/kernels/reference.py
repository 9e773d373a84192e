"""Pure-PyTorch block-sparse attention: a dense masked reference and a gather-based implementation.

Both take ``q`` ``[B, H, Nq, D]``, ``k``/``v`` ``[B, H, Nk, D]`` and a
:class:`~accel.kernels.block_mask.BlockSparseMask`, and return ``[B, H, Nq, D]`` in ``q``'s dtype.
Convention shared by every backend: a query row with no active key attends to nothing and its
output is **zero** (plain SDPA would return NaN for such a row).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .block_mask import BlockSparseMask


def dense_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockSparseMask, scale: float | None = None
) -> torch.Tensor:
    """SDPA with the expanded boolean mask (``mask.to_dense()``); empty rows give zeros.

    Memory is O(B * H * Nq * Nk): for tests and small shapes only.
    """
    b, h = q.shape[:2]
    dense = mask.expand(b, h).to_dense().to(q.device)
    empty = ~dense.any(-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=dense | empty, scale=scale)
    return out.masked_fill(empty, 0.0)


def _pad_to_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    n = x.shape[2]
    nb = math.ceil(n / block)
    if nb * block != n:
        x = F.pad(x, (0, 0, 0, nb * block - n))
    return x.reshape(*x.shape[:2], nb, block, x.shape[-1])


def gather_block_sparse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: BlockSparseMask,
    scale: float | None = None,
    max_elements: int = 1 << 25,
) -> torch.Tensor:
    """Block-sparse attention by gathering each query block's active key/value blocks.

    For each query block: gather its ``kv_num`` key and value blocks (padded to ``MAXK``), mask
    padding slots and tokens past ``Nk``, softmax, multiply. Computes in float32; query blocks are
    processed in chunks so that gathered keys stay under ``max_elements`` values. Work is
    proportional to the number of active blocks, memory to the chunk.
    """
    b, h, nq, d = q.shape
    nk = k.shape[2]
    m = mask.expand(b, h)
    bm, bn = m.block_m, m.block_n
    scale = d**-0.5 if scale is None else scale
    maxk = m.kv_idx.shape[-1]
    qb = _pad_to_blocks(q.float(), bm)  # [B,H,Mb,bm,D]
    kb = _pad_to_blocks(k.float(), bn).flatten(3)  # [B,H,Nb,bn*D]
    vb = _pad_to_blocks(v.float(), bn).flatten(3)
    token_ok = (torch.arange(m.num_kv_blocks * bn, device=q.device) < nk).view(m.num_kv_blocks, bn)
    kv_idx = m.kv_idx.to(q.device).long()
    kv_num = m.kv_num.to(q.device).long()
    slots = torch.arange(maxk, device=q.device)
    chunk = max(1, max_elements // max(1, b * h * maxk * bn * d))
    outs = []
    for start in range(0, m.num_q_blocks, chunk):
        stop = min(start + chunk, m.num_q_blocks)
        c = stop - start
        idx = kv_idx[:, :, start:stop]  # [B,H,c,K]
        flat = idx.reshape(b, h, c * maxk, 1).expand(-1, -1, -1, bn * d)
        keys = torch.gather(kb, 2, flat).view(b, h, c, maxk * bn, d)
        values = torch.gather(vb, 2, flat).view(b, h, c, maxk * bn, d)
        valid = (slots < kv_num[:, :, start:stop, None])[..., None] & token_ok[idx]  # [B,H,c,K,bn]
        valid = valid.view(b, h, c, 1, maxk * bn)
        scores = (qb[:, :, start:stop] @ keys.transpose(-1, -2)) * scale  # [B,H,c,bm,K*bn]
        scores = scores.masked_fill(~valid, float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # empty rows: all -inf -> zeros
        outs.append(probs @ values)  # [B,H,c,bm,D]
    out = torch.cat(outs, dim=2).reshape(b, h, m.num_q_blocks * bm, d)[:, :, :nq]
    return out.to(q.dtype)
