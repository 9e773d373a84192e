"""Dynamic, content-aware block masks: Adaptive Block-Sparse Attention (Video-BLADE, arXiv 2508.10774).

Score each (query block, key block) pair from pooled or sampled queries and keys, normalise each
row to a distribution, and keep the highest-scoring key blocks of every row until their cumulative
mass reaches ``tau``, clamped to ``[min_keep, max_keep]`` of the row; masks are per batch and head.
``"mean"`` pools each block to its mean token (SpargeAttn arXiv 2502.18137, NABLA); ``"sample"`` is
BLADE's probe: ``samples`` evenly spaced tokens per block, softmax over the sampled keys, max-pooled
per block pair.
"""

from __future__ import annotations

import math

import torch

from ...errors import ConfigError
from ...kernels.block_mask import BlockSparseMask

SCORE_METHODS = ("mean", "sample")


def _pad_blocks(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [B,H,N,D] -> ``[B,H,nb,block,D]`` zero-padded, and the token count of each block."""
    n = x.shape[2]
    nb = math.ceil(n / block)
    pad = nb * block - n
    if pad:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
    counts = torch.full((nb,), block, device=x.device)
    counts[-1] = n - block * (nb - 1)
    return x.view(*x.shape[:2], nb, block, x.shape[-1]), counts


def mean_pool(x: torch.Tensor, block: int) -> torch.Tensor:
    """Mean over the tokens of each block: ``[B,H,N,D] -> [B,H,nb,D]``.

    A partial last block is averaged over its own tokens.
    """
    blocks, counts = _pad_blocks(x.float(), block)
    return blocks.sum(3) / counts.to(blocks.dtype)[:, None]


def sample_tokens(x: torch.Tensor, block: int, samples: int) -> torch.Tensor:
    """``samples`` evenly spaced tokens of each block: ``[B,H,N,D] -> [B,H,nb,samples,D]``."""
    n = x.shape[2]
    nb = math.ceil(n / block)
    starts = torch.arange(nb, device=x.device) * block
    sizes = torch.clamp(n - starts, max=block)
    offsets = (
        torch.arange(samples, device=x.device)[None, :] * sizes[:, None]
    ) // samples  # [nb, s], within each block
    index = (starts[:, None] + offsets).flatten()
    return x.float().index_select(2, index).view(*x.shape[:2], nb, samples, x.shape[-1])


def block_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    block_m: int,
    block_n: int,
    method: str = "mean",
    samples: int = 16,
    scale: float | None = None,
) -> torch.Tensor:
    """Row-normalised block importance ``[B, H, Mb, Nb]`` (each row sums to 1) from ``q``, ``k`` [B,H,N,D]."""
    if method not in SCORE_METHODS:
        raise ConfigError(f"score method must be one of {list(SCORE_METHODS)}, got {method!r}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if method == "mean":
        logits = mean_pool(q, block_m) @ mean_pool(k, block_n).transpose(-1, -2) * scale
        return torch.softmax(logits, dim=-1)
    qs = sample_tokens(q, block_m, samples)  # [B,H,Mb,s,D]
    ks = sample_tokens(k, block_n, samples)  # [B,H,Nb,s,D]
    b, h, mb, s, d = qs.shape
    nb = ks.shape[2]
    probs = torch.softmax(qs.reshape(b, h, mb * s, d) @ ks.reshape(b, h, nb * s, d).transpose(-1, -2) * scale, dim=-1)
    pooled = probs.view(b, h, mb, s, nb, s).amax(dim=(3, 5))
    return pooled / pooled.sum(-1, keepdim=True).clamp_min(1e-30)


def keep_by_threshold(scores: torch.Tensor, tau: float, min_keep: float = 0.0, max_keep: float = 1.0) -> torch.Tensor:
    """Bool mask of the same shape as ``scores`` [..., Nb] (rows summing to 1).

    Each row keeps its highest-scoring entries, fewest first, until their cumulative score is at
    least ``tau``; the count is then clamped to ``[ceil(min_keep * Nb), max(1, floor(max_keep * Nb))]``
    (and is always at least 1).
    """
    if not 0.0 < tau <= 1.0:
        raise ConfigError(f"tau must be in (0, 1], got {tau}")
    if not 0.0 <= min_keep <= max_keep <= 1.0:
        raise ConfigError(f"need 0 <= min_keep <= max_keep <= 1, got min_keep={min_keep}, max_keep={max_keep}")
    nb = scores.shape[-1]
    sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
    cum = sorted_scores.cumsum(-1)
    needed = (cum < tau - 1e-6).sum(-1, keepdim=True) + 1
    low = max(1, math.ceil(min_keep * nb - 1e-9))
    high = max(low, max(1, math.floor(max_keep * nb + 1e-9)))
    count = needed.clamp(low, high)
    ranks = torch.arange(nb, device=scores.device)
    keep_sorted = ranks < count
    keep = torch.zeros_like(keep_sorted)
    keep.scatter_(-1, order, keep_sorted)
    return keep


def dynamic_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    block_m: int,
    block_n: int | None = None,
    tau: float = 0.9,
    min_keep: float = 0.0,
    max_keep: float = 1.0,
    method: str = "mean",
    samples: int = 16,
    scale: float | None = None,
) -> BlockSparseMask:
    """Per-head adaptive block mask for ``q`` [B,H,Nq,D] against ``k`` [B,H,Nk,D] (tokens in working order)."""
    block_n = block_m if block_n is None else block_n
    scores = block_scores(q, k, block_m, block_n, method, samples, scale)
    keep = keep_by_threshold(scores, tau, min_keep, max_keep)
    return BlockSparseMask.from_block_bool(keep, block_m, block_n, q.shape[2], k.shape[2])
