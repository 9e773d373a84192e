"""RAS token selection: per-token importance from the last model output, starvation, top-k.

Algorithm (Liu et al., arXiv 2502.10389): a DiT's focus is stable between adjacent steps, so the
tokens whose output changed most at step t (std or L2 over channels, averaged over the token's
patch) are the ones recomputed at step t+1; tokens dropped for k steps in a row get their score
scaled by exp(+-s k) so they come back. One selection is shared by every sample of the batch.
"""

from __future__ import annotations

import torch


def to_tokens(x: torch.Tensor, patch: int | None) -> torch.Tensor:
    """``(B, C, H, W)`` latents -> ``(B, N, C, p*p)`` tokens (row-major patches); ``(B, N, C)`` stays."""
    if patch is None:
        return x.unsqueeze(-1)
    b, c, h, w = x.shape
    t = x.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(b, (h // patch) * (w // patch), c, patch * patch)


def from_tokens(t: torch.Tensor, patch: int | None, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`to_tokens`."""
    if patch is None:
        return t.squeeze(-1)
    b, c, h, w = shape
    x = t.reshape(b, h // patch, w // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def importance(output: torch.Tensor, patch: int | None, metric: str, channels: int | None = None) -> torch.Tensor:
    """Per-token importance ``(N,)`` averaged over the batch rows."""
    tokens = to_tokens(output.float(), patch)
    if channels is not None:
        tokens = tokens[:, :, :channels]
    per_pixel = tokens.std(dim=2) if metric == "std" else tokens.pow(2).sum(dim=2).sqrt()
    return per_pixel.mean(dim=(0, 2))


def select(
    scores: torch.Tensor,
    starved: torch.Tensor,
    keep_count: int,
    starvation_scale: float,
    keep: str,
    always: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sorted indices of the ``keep_count`` tokens to recompute."""
    if keep == "high":
        effective = scores * torch.exp(starvation_scale * starved)
    else:
        effective = -(scores * torch.exp(-starvation_scale * starved))
    if always is not None and len(always):
        effective = effective.clone()
        effective[always] = float("inf")
    index = torch.topk(effective, keep_count, sorted=False).indices
    return torch.sort(index).values
